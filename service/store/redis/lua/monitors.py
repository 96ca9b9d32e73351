"""Lua scripts of the Redis store's address monitors and chain followers: monitor writes, a
follower's step (ADVANCE), its cursor lease and a monitor's history, each one atomic script.
Key layout and invariants are described in `service.store.redis.store`.
"""

from __future__ import annotations

from service.store.redis.lua.prelude import ACCEPT_FN, PRELUDE, READ_PRELUDE

# --- address monitors and followers ------------------------------------------------------
# ARGV: prefix, monitor id, then its field/value pairs. The hash's `rev` field counts its
# writes (absent: 0). Returns the new monitors version.
PUT_MONITOR = PRELUDE + """
local id = ARGV[2]
local rev = tonumber(redis.call('HGET', k('mon', id), 'rev') or '0') + 1
redis.call('DEL', k('mon', id))
redis.call('HSET', k('mon', id), 'rev', rev, unpack(ARGV, 3))
if not redis.call('ZSCORE', k('mons'), id) then
  redis.call('ZADD', k('mons'), redis.call('INCR', k('seq')), id)
end
return redis.call('INCR', k('monver'))
"""

# ARGV: prefix, monitor id, the revision it was read at, then its field/value pairs. 1 when
# written; 0 (nothing written) when the monitor is gone or was written since.
REPLACE_MONITOR = PRELUDE + """
local key = k('mon', ARGV[2])
if redis.call('EXISTS', key) == 0 or (redis.call('HGET', key, 'rev') or '0') ~= ARGV[3] then
  return 0
end
redis.call('DEL', key)
redis.call('HSET', key, 'rev', tonumber(ARGV[3]) + 1, unpack(ARGV, 4))
redis.call('INCR', k('monver'))
return 1
"""

# ARGV: prefix, monitor id. Returns 0 when unknown (the version stays).
DELETE_MONITOR = PRELUDE + """
if redis.call('DEL', k('mon', ARGV[2])) == 0 then return 0 end
redis.call('ZREM', k('mons'), ARGV[2])
redis.call('INCR', k('monver'))
return 1
"""

# ARGV: prefix, then a chain name to list only its monitors. Monitors in creation order.
LIST_MONITORS = READ_PRELUDE + """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', k('mons'), 0, -1)) do
  if not ARGV[2] or redis.call('HGET', k('mon', id), 'chain') == ARGV[2] then
    out[#out + 1] = redis.call('HGETALL', k('mon', id))
  end
end
return out
"""

# A follower's step, in one script: the events (routed to their monitor's endpoint while the
# monitor exists and is enabled), one history entry per event, then the cursor. One script is
# one transaction in the AOF, so the cursor can never be on disk without the events.
# ARGV: prefix, now, idempotency window, key ttl (s), count, cursor name, state (JSON),
# holder ('' for none: when given, nothing is written unless it holds the cursor's lease, see
# HOLD_CURSOR, and the reply is a CURSORTAKEN error), then four values per event as in ACCEPT,
# then five per match: monitor id, kind, tx hash, addresses (space-separated), block number.
# Returns the event ids.
# History of monitor M: mh:M zset event id -> sequence (newest highest); mhx:M and mha:M
# hold "<tx hash>:<seq>:<event id>" and "<address>:<seq>:<event id>" at score 0, so a
# lexicographic range finds one transaction's or one address's entries, newest last.
ADVANCE = PRELUDE + ACCEPT_FN + """
local now, window, ttl, count = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local holder = ARGV[8]
if holder ~= '' and redis.call('GET', k('cursorlease', ARGV[6])) ~= holder then
  return redis.error_reply('CURSORTAKEN ' .. ARGV[6] .. ' is not held by ' .. holder)
end
local mbase = 9 + 4 * count
local routes, endpoint_of = {}, {}
for i = 0, count - 1 do
  local mon = ARGV[mbase + 5 * i]
  if endpoint_of[mon] == nil then
    local m = redis.call('HMGET', k('mon', mon), 'ep', 'enabled')
    endpoint_of[mon] = (m[1] and m[2] == '1') and m[1] or ''
  end
  routes[i + 1] = endpoint_of[mon]
end
local ids = accept(now, window, ttl, count, 9, routes)
for i = 0, count - 1 do
  local at = mbase + 5 * i
  local mon, kind, tx, addrs, block = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3],
                                      ARGV[at + 4]
  local id = ids[i + 1]
  -- an event already known (its idempotency key) keeps the one history entry it has
  if redis.call('HSETNX', k('ev', id), 'mon', mon) == 1 then
    redis.call('HSET', k('ev', id), 'kind', kind, 'tx', tx, 'addrs', addrs, 'block', block)
    local seq = redis.call('INCR', k('seq'))
    local tail = ':' .. string.format('%016d', seq) .. ':' .. id
    redis.call('ZADD', k('mh', mon), seq, id)
    redis.call('ZADD', k('mhx', mon), 0, tx .. tail)
    for a in string.gmatch(addrs, '%S+') do redis.call('ZADD', k('mha', mon), 0, a .. tail) end
  end
end
redis.call('SET', k('cursor', ARGV[6]), ARGV[7])
return ids
"""

# ARGV: prefix, cursor name, holder, time to live in ms. 1 when `holder` holds the lease now
# (it was free, ran out, or was its own: renewed), 0 while another holder's lease runs.
HOLD_CURSOR = PRELUDE + """
local key, holder = k('cursorlease', ARGV[2]), ARGV[3]
local current = redis.call('GET', key)
if current and current ~= holder then return 0 end
redis.call('SET', key, holder, 'PX', ARGV[4])
return 1
"""

# ARGV: prefix, cursor name, holder. Ends the lease when `holder` has it.
LET_GO_CURSOR = PRELUDE + """
local key = k('cursorlease', ARGV[2])
if redis.call('GET', key) == ARGV[3] then redis.call('DEL', key) end
return 0
"""

# ARGV: prefix, monitor id, tx hash ('' for any), address ('' for any), limit, before (an
# event id of the history: only entries older than it; '' for the newest). Newest first:
# {event hash fields...} per entry; a NOTINHISTORY error when `before` is not an entry.
MONITOR_EVENTS = READ_PRELUDE + """
local mon, tx, addr, limit, before = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local ids = {}
local below = nil  -- the sequence number entries must be under
if before ~= '' then
  below = redis.call('ZSCORE', k('mh', mon), before)
  if not below then
    return redis.error_reply('NOTINHISTORY ' .. before .. ' is not in the history of ' .. mon)
  end
end
-- entries "<prefix>:<16-digit seq>:<event id>" of a lexicographic index, newest first
local function newest(key, prefix, max)
  local upper = '(' .. prefix .. ';'
  if below then upper = '(' .. prefix .. ':' .. string.format('%016d', tonumber(below)) end
  local found = redis.call('ZREVRANGEBYLEX', key, upper, '(' .. prefix .. ':',
                           'LIMIT', 0, max)
  local out = {}
  for _, entry in ipairs(found) do out[#out + 1] = string.sub(entry, #prefix + 19) end
  return out
end
if limit <= 0 then return {} end
if tx ~= '' then
  for _, id in ipairs(newest(k('mhx', mon), tx, -1)) do
    local addrs = ' ' .. (redis.call('HGET', k('ev', id), 'addrs') or '') .. ' '
    if #ids < limit and (addr == '' or string.find(addrs, ' ' .. addr .. ' ', 1, true)) then
      ids[#ids + 1] = id
    end
  end
elseif addr ~= '' then
  ids = newest(k('mha', mon), addr, limit)
elseif below then
  ids = redis.call('ZREVRANGEBYSCORE', k('mh', mon), '(' .. below, '-inf', 'LIMIT', 0, limit)
else
  ids = redis.call('ZREVRANGE', k('mh', mon), 0, limit - 1)
end
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = redis.call('HMGET', k('ev', id), 'id', 'type', 'at', 'data', 'mon', 'kind',
                             'tx', 'addrs', 'block')
end
return out
"""

# ARGV: prefix, endpoint id, limit. Ids of the monitors whose events go to the endpoint,
# in creation order, at most `limit`.
ENDPOINT_MONITORS = READ_PRELUDE + """
local out, limit = {}, tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZRANGE', k('mons'), 0, -1)) do
  if #out >= limit then break end
  if redis.call('HGET', k('mon', id), 'ep') == ARGV[2] then out[#out + 1] = id end
end
return out
"""
