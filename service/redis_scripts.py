"""Lua scripts of the Redis store: each store operation that touches more than one key runs
as one script, so it is atomic between processes and lands in the AOF as one transaction.
Key layout and invariants are described in `service.redis_store`.
"""

from __future__ import annotations

# Shared by every script. ARGV[1] is the key prefix. Times are integer microseconds since
# the epoch, passed and stored as strings: Lua numbers are doubles printed with 14 digits,
# so a time never goes through tostring(); tonumber() is only used to compare.
# The shebang makes Redis refuse a writing script up front when memory is full, instead of
# failing at its first write: Redis does not roll back the writes a failed script made.
_COMMON = """
local P = ARGV[1]
local function k(...) return P .. ':' .. table.concat({...}, ':') end
local GROUP = 'workers'
local ACTIVE = {pending = true, retrying = true}
local function unlease(entry)
  redis.call('XACK', k('stream'), GROUP, entry)
  redis.call('XDEL', k('stream'), entry)
  redis.call('ZREM', k('leases'), entry)
end
"""
_PRELUDE = "#!lua\n" + _COMMON
_READ = "#!lua flags=no-writes\n" + _COMMON  # reads still answer when memory is full

# Accepting events, shared by ACCEPT and ADVANCE. ARGV from `base`: four values per event
# (event id, type, data JSON, idempotency key or ''). `routes` is nil to fan each event out
# to every enabled endpoint that wants its type, or per event the one endpoint id it may go
# to ('' for none). Returns the event ids.
_ACCEPT_FN = """
local function accept(now, window, ttl, count, base, routes)
  local targets = {}  -- enabled endpoints: {id, set of types or false for every type}
  for _, id in ipairs(redis.call('ZRANGE', k('eps'), 0, -1)) do
    local ep = redis.call('HMGET', k('ep', id), 'disabled', 'types')
    if ep[1] == '0' then
      local types = cjson.decode(ep[2])
      local wanted = false
      if #types > 0 then
        wanted = {}
        for _, t in ipairs(types) do wanted[t] = true end
      end
      targets[#targets + 1] = {id, wanted}
    end
  end
  local ids = {}
  for i = 0, count - 1 do
    local at = base + 4 * i
    local id, etype, data, idem = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
    local first = nil
    if idem ~= '' then
      local key, seen = k('idem', idem), id .. ' ' .. now
      if not redis.call('SET', key, seen, 'NX', 'EX', ttl) then
        -- the key's own expiry is only garbage collection: the window runs on the caller's now
        local old = redis.call('GET', key)
        local sp = string.find(old, ' ', 1, true)
        if tonumber(now) - tonumber(string.sub(old, sp + 1)) < window then
          first = string.sub(old, 1, sp - 1)
        else
          redis.call('SET', key, seen, 'EX', ttl)
        end
      end
    end
    if first then
      ids[#ids + 1] = first
    else
      local only = routes and routes[i + 1]
      local dls = {}
      for _, t in ipairs(targets) do
        if (not only or only == t[1]) and (not t[2] or t[2][etype]) then
          -- Lua has no good random source; the event id is random, so this is unique too
          local did = 'msg_' .. string.sub(redis.sha1hex(id .. '/' .. t[1]), 1, 24)
          local seq = redis.call('INCR', k('seq'))
          local dk = string.format('%016d', seq) .. ':' .. did  -- ties on due time: oldest first
          redis.call('HSET', k('dl', did), 'id', did, 'ev', id, 'ep', t[1], 'st', 'pending',
                     'n', '0', 'next', now, 'created', now, 'acc', now, 'dk', dk)
          redis.call('ZADD', k('due'), now, dk)
          redis.call('ZADD', k('active'), now, did)
          redis.call('ZADD', k('ep', t[1], 'dls'), seq, did)
          dls[#dls + 1] = did
        end
      end
      redis.call('HSET', k('ev', id), 'id', id, 'type', etype, 'data', data, 'at', now,
                 'idem', idem, 'dls', table.concat(dls, ' '))
      ids[#ids + 1] = id
    end
  end
  return ids
end
"""

# ARGV: prefix, now, idempotency window, key ttl (s), count, then per event: event id, type,
# data (JSON), idempotency key ('' for none). Returns the event ids.
ACCEPT = _PRELUDE + _ACCEPT_FN + """
return accept(ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), 6, nil)
"""

# ARGV: prefix, now, lease deadline, limit, consumer. A lease ending at `now` has ended.
# Returns {token, delivery, event, endpoint} for each claimed delivery.
CLAIM = _PRELUDE + """
local now, deadline, limit, consumer = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local stream, leases, due = k('stream'), k('leases'), k('due')
if redis.call('EXISTS', stream) == 0 or #redis.call('XINFO', 'GROUPS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')  -- '0': keep what is there
end
local out = {}
-- An entry this consumer now owns: lease its delivery, or let go of an entry that is stale
-- (the delivery moved on) or whose endpoint is disabled (parked, state unchanged, until the
-- endpoint is enabled again) or deleted.
local function take(entry, did)
  local dlk = k('dl', did)
  local d = redis.call('HMGET', dlk, 'entry', 'next', 'dk', 'st', 'ep')
  local ours = ACTIVE[d[4]] and (not d[1] or d[1] == entry)
  local disabled = ours and redis.call('HGET', k('ep', d[5]), 'disabled')
  if disabled == '0' then
    redis.call('ZADD', leases, deadline, entry)
    local token = entry .. '/' .. redis.call('HINCRBY', dlk, 'gen', 1)
    redis.call('HSET', dlk, 'entry', entry, 'lease', token)
    out[#out + 1] = {token, redis.call('HGETALL', dlk), redis.call('HGETALL',
                     k('ev', redis.call('HGET', dlk, 'ev'))), redis.call('HGETALL', k('ep', d[5]))}
    return
  end
  unlease(entry)
  if ours then redis.call('HDEL', dlk, 'entry', 'lease') end
  if disabled == '1' then redis.call('ZADD', k('ep', d[5], 'parked'), d[2], d[3]) end
end
-- Every entry looked at leaves the set it was found in, so both loops end.
while #out < limit do  -- 1. leases that ran out: their worker died or stalled
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit - #out)
  if #expired == 0 then break end
  for _, entry in ipairs(expired) do
    local got = redis.call('XCLAIM', stream, GROUP, consumer, 0, entry)
    if got[1] then
      take(entry, got[1][2][2])
    else  -- gone from the pending list (a consumer deleted by hand): due again, not lost
      local e = redis.call('XRANGE', stream, entry, entry)
      unlease(entry)
      local dlk = e[1] and k('dl', e[1][2][2])
      local d = dlk and redis.call('HMGET', dlk, 'entry', 'next', 'dk')
      if d and d[1] == entry then
        redis.call('HDEL', dlk, 'entry', 'lease')
        redis.call('ZADD', due, d[2], d[3])
      end
    end
  end
end
while #out < limit do  -- 2. due deliveries, oldest first, through the stream to this consumer
  local need = limit - #out
  for _, dk in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, need)) do
    redis.call('ZREM', due, dk)
    redis.call('XADD', stream, '*', 'd', string.sub(dk, 18))
  end
  -- reads what was just added, after anything an earlier call added but could not read
  local read = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', need,
                          'STREAMS', stream, '>')
  if not read then break end
  for _, e in ipairs(read[1][2]) do take(e[1], e[2][2]) end
end
return out
"""

# ARGV: prefix, then groups of seven: delivery id, token, attempt (JSON), state, next time
# or '', reason to disable the endpoint or '', endpoint failing since or ''.
SETTLE = _PRELUDE + """
local function settle(did, token, attempt, state, next_at, reason, failing)
  local dlk = k('dl', did)
  local d = redis.call('HMGET', dlk, 'lease', 'entry', 'ep', 'dk', 'created')
  if not d[3] then return -1 end
  redis.call('RPUSH', k('att', did), attempt)
  local n = redis.call('LLEN', k('att', did))
  if d[1] ~= token then  -- the lease ran out and another worker owns the delivery now
    redis.call('HSET', dlk, 'n', n)
    return 0
  end
  unlease(d[2])
  redis.call('HDEL', dlk, 'entry', 'lease')
  local epk = k('ep', d[3])
  local exists = redis.call('EXISTS', epk) == 1
  if not exists and ACTIVE[state] then state, next_at = 'dead', '' end
  redis.call('HSET', dlk, 'st', state, 'n', n, 'next', next_at)
  if ACTIVE[state] then
    redis.call('ZADD', k('due'), next_at, d[4])
  else
    redis.call('ZREM', k('active'), did)
    if state == 'dead' and exists then redis.call('ZADD', k('ep', d[3], 'dead'), d[5], did) end
  end
  if exists then
    if reason ~= '' then
      redis.call('HSET', epk, 'disabled', '1', 'reason', reason)
      redis.call('SADD', k('disabled'), d[3])
    end
    local current = redis.call('HGET', epk, 'failing')
    -- concurrent settles of one endpoint: the earliest start of the streak wins
    if failing == '' or not current or current == '' or tonumber(failing) < tonumber(current) then
      redis.call('HSET', epk, 'failing', failing)
    end
  end
  return 1
end
local out = {}
for i = 2, #ARGV, 7 do
  out[#out + 1] = settle(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
                         ARGV[i + 5], ARGV[i + 6])
end
return out
"""

# ARGV: prefix, then (delivery id, token) pairs. Leased deliveries become due again at once.
RELEASE = _PRELUDE + """
for i = 2, #ARGV, 2 do
  local dlk = k('dl', ARGV[i])
  local d = redis.call('HMGET', dlk, 'lease', 'entry', 'next', 'dk')
  if d[1] == ARGV[i + 1] then
    unlease(d[2])
    redis.call('HDEL', dlk, 'entry', 'lease')
    redis.call('ZADD', k('due'), d[3], d[4])
  end
end
return 0
"""

# ARGV: prefix, endpoint id, then its field/value pairs. Enabling an endpoint returns its
# parked deliveries to the due set with their own due times.
PUT_ENDPOINT = _PRELUDE + """
local id = ARGV[2]
local epk = k('ep', id)
redis.call('DEL', epk)
redis.call('HSET', epk, unpack(ARGV, 3))
if not redis.call('ZSCORE', k('eps'), id) then
  redis.call('ZADD', k('eps'), redis.call('INCR', k('seq')), id)
end
if redis.call('HGET', epk, 'disabled') == '1' then
  redis.call('SADD', k('disabled'), id)
else
  redis.call('SREM', k('disabled'), id)
  local parked = redis.call('ZRANGE', k('ep', id, 'parked'), 0, -1, 'WITHSCORES')
  for i = 1, #parked, 2 do redis.call('ZADD', k('due'), parked[i + 1], parked[i]) end
  redis.call('DEL', k('ep', id, 'parked'))
end
return 0
"""

# ARGV: prefix, endpoint id. Its active deliveries become dead, leases included; returns 0
# when the endpoint is unknown.
DELETE_ENDPOINT = _PRELUDE + """
local id = ARGV[2]
if redis.call('EXISTS', k('ep', id)) == 0 then return 0 end
for _, did in ipairs(redis.call('ZRANGE', k('ep', id, 'dls'), 0, -1)) do
  local dlk = k('dl', did)
  local d = redis.call('HMGET', dlk, 'st', 'dk', 'entry')
  if ACTIVE[d[1]] then
    redis.call('HSET', dlk, 'st', 'dead', 'next', '')
    redis.call('ZREM', k('due'), d[2])
    redis.call('ZREM', k('active'), did)
    if d[3] then
      unlease(d[3])
      redis.call('HDEL', dlk, 'entry', 'lease')
    end
  end
end
redis.call('DEL', k('ep', id), k('ep', id, 'parked'), k('ep', id, 'dead'))
redis.call('ZREM', k('eps'), id)
redis.call('SREM', k('disabled'), id)
return 1
"""

# ARGV: prefix, endpoint id, since ('-inf'), until ('+inf'), now. Returns how many.
REPLAY = _PRELUDE + """
local id, now = ARGV[2], ARGV[5]
local dead = redis.call('ZRANGEBYSCORE', k('ep', id, 'dead'), ARGV[3], ARGV[4])
for _, did in ipairs(dead) do
  local dlk = k('dl', did)
  redis.call('HSET', dlk, 'st', 'pending', 'next', now)
  local d = redis.call('HMGET', dlk, 'dk', 'acc')
  redis.call('ZADD', k('due'), now, d[1])
  redis.call('ZADD', k('active'), d[2], did)
  redis.call('ZREM', k('ep', id, 'dead'), did)
end
return #dead
"""

# Reads: one round trip and one consistent snapshot each.
# ARGV: prefix, event id. Returns {event, {{delivery, attempts}...}} or {}.
GET_EVENT = _READ + """
local ev = redis.call('HGETALL', k('ev', ARGV[2]))
if #ev == 0 then return {} end
local out = {}
for did in string.gmatch(redis.call('HGET', k('ev', ARGV[2]), 'dls'), '%S+') do
  out[#out + 1] = {redis.call('HGETALL', k('dl', did)), redis.call('LRANGE', k('att', did), 0, -1)}
end
return {ev, out}
"""

# ARGV: prefix, endpoint id. Its deliveries, oldest first.
DELIVERIES_OF = _READ + """
local out = {}
for _, did in ipairs(redis.call('ZRANGE', k('ep', ARGV[2], 'dls'), 0, -1)) do
  out[#out + 1] = redis.call('HGETALL', k('dl', did))
end
return out
"""

# ARGV: prefix. Every endpoint, in creation order.
LIST_ENDPOINTS = _READ + """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', k('eps'), 0, -1)) do
  out[#out + 1] = redis.call('HGETALL', k('ep', id))
end
return out
"""

# ARGV: prefix. Returns {active count, oldest acceptance time or '', disabled endpoints}.
STATS = _READ + """
local oldest = redis.call('ZRANGE', k('active'), 0, 0, 'WITHSCORES')
return {redis.call('ZCARD', k('active')), oldest[2] or '', redis.call('SCARD', k('disabled'))}
"""

# --- address monitors and followers ------------------------------------------------------
# ARGV: prefix, monitor id, then its field/value pairs. The hash's `rev` field counts its
# writes (absent: 0). Returns the new monitors version.
PUT_MONITOR = _PRELUDE + """
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
REPLACE_MONITOR = _PRELUDE + """
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
DELETE_MONITOR = _PRELUDE + """
if redis.call('DEL', k('mon', ARGV[2])) == 0 then return 0 end
redis.call('ZREM', k('mons'), ARGV[2])
redis.call('INCR', k('monver'))
return 1
"""

# ARGV: prefix, then a chain name to list only its monitors. Monitors in creation order.
LIST_MONITORS = _READ + """
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
ADVANCE = _PRELUDE + _ACCEPT_FN + """
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
HOLD_CURSOR = _PRELUDE + """
local key, holder = k('cursorlease', ARGV[2]), ARGV[3]
local current = redis.call('GET', key)
if current and current ~= holder then return 0 end
redis.call('SET', key, holder, 'PX', ARGV[4])
return 1
"""

# ARGV: prefix, cursor name, holder. Ends the lease when `holder` has it.
LET_GO_CURSOR = _PRELUDE + """
local key = k('cursorlease', ARGV[2])
if redis.call('GET', key) == ARGV[3] then redis.call('DEL', key) end
return 0
"""

# ARGV: prefix, monitor id, tx hash ('' for any), address ('' for any), limit. Newest first:
# {event hash fields...} per entry.
MONITOR_EVENTS = _READ + """
local mon, tx, addr, limit = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local ids = {}
-- entries "<prefix>:<16-digit seq>:<event id>" of a lexicographic index, newest first
local function newest(key, prefix, max)
  local found = redis.call('ZREVRANGEBYLEX', key, '(' .. prefix .. ';', '(' .. prefix .. ':',
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
