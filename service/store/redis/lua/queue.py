"""Lua scripts of the Redis store's queue and endpoints: each store operation that touches
more than one key runs as one script, so it is atomic between processes and lands in the AOF
as one transaction. Key layout and invariants are described in `service.store.redis.store`.
"""

from __future__ import annotations

from service.store.redis.lua.prelude import ACCEPT_FN, PRELUDE, READ_PRELUDE

# ARGV: prefix, now, idempotency window, key ttl (s), count, then per event: event id, type,
# data (JSON), idempotency key ('' for none). Returns the event ids.
ACCEPT = PRELUDE + ACCEPT_FN + """
return accept(ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), 6, nil)
"""

# ARGV: prefix, now, lease deadline, limit, consumer, then (endpoint id, time) pairs: busy
# endpoints, whose due deliveries are put off until that time instead of claimed. A lease
# ending at `now` has ended. Returns {token, delivery, event, endpoint} per claimed delivery.
CLAIM = PRELUDE + """
local now, deadline, limit, consumer = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local stream, leases, due = k('stream'), k('leases'), k('due')
local busy = {}
for i = 6, #ARGV, 2 do busy[ARGV[i]] = ARGV[i + 1] end
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
local rounds = 0
while #out < limit and rounds < 8 do  -- 2. due deliveries, oldest first, through the stream
  rounds = rounds + 1
  local need = limit - #out
  local found = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, need)
  local put_off = 0
  for _, dk in ipairs(found) do
    local later = next(busy) and busy[redis.call('HGET', k('dl', string.sub(dk, 18)), 'ep')]
    if later then  -- its endpoint is busy: due again then (later than now: not seen again)
      redis.call('ZADD', due, later, dk)
      put_off = put_off + 1
    else
      redis.call('ZREM', due, dk)
      redis.call('XADD', stream, '*', 'd', string.sub(dk, 18))
    end
  end
  -- reads what was just added, after anything an earlier call added but could not read
  local read = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', need,
                          'STREAMS', stream, '>')
  if read then
    for _, e in ipairs(read[1][2]) do take(e[1], e[2][2]) end
  elseif put_off == 0 or #found < need then
    break
  end
end
return out
"""

# ARGV: prefix, then groups of seven: delivery id, token, attempt (JSON), state, next time
# or '', reason to disable the endpoint or '', endpoint failing since or ''.
SETTLE = PRELUDE + """
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

# ARGV: prefix, then (delivery id, token, not before or '') triples. Leased deliveries become
# due again: at once, or not before the time given.
RELEASE = PRELUDE + """
for i = 2, #ARGV, 3 do
  local dlk = k('dl', ARGV[i])
  local d = redis.call('HMGET', dlk, 'lease', 'entry', 'next', 'dk')
  if d[1] == ARGV[i + 1] then
    unlease(d[2])
    redis.call('HDEL', dlk, 'entry', 'lease')
    local due = d[3]
    if ARGV[i + 2] ~= '' and tonumber(ARGV[i + 2]) > tonumber(due) then due = ARGV[i + 2] end
    redis.call('ZADD', k('due'), due, d[4])
  end
end
return 0
"""

# ARGV: prefix, endpoint id, then its field/value pairs. Enabling an endpoint returns its
# parked deliveries to the due set with their own due times.
PUT_ENDPOINT = PRELUDE + """
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
DELETE_ENDPOINT = PRELUDE + """
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
REPLAY = PRELUDE + """
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
GET_EVENT = READ_PRELUDE + """
local ev = redis.call('HGETALL', k('ev', ARGV[2]))
if #ev == 0 then return {} end
local out = {}
for did in string.gmatch(redis.call('HGET', k('ev', ARGV[2]), 'dls'), '%S+') do
  out[#out + 1] = {redis.call('HGETALL', k('dl', did)), redis.call('LRANGE', k('att', did), 0, -1)}
end
return {ev, out}
"""

# ARGV: prefix, endpoint id. Its deliveries, oldest first.
DELIVERIES_OF = READ_PRELUDE + """
local out = {}
for _, did in ipairs(redis.call('ZRANGE', k('ep', ARGV[2], 'dls'), 0, -1)) do
  out[#out + 1] = redis.call('HGETALL', k('dl', did))
end
return out
"""

# ARGV: prefix. Every endpoint, in creation order.
LIST_ENDPOINTS = READ_PRELUDE + """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', k('eps'), 0, -1)) do
  out[#out + 1] = redis.call('HGETALL', k('ep', id))
end
return out
"""

# ARGV: prefix. Returns {active count, oldest acceptance time or '', disabled endpoints}.
# ARGV: prefix, now. Returns depth, the oldest acceptance time ('' for none), disabled
# endpoints, deliveries due by now (not in the stream: claimed by nobody) and the group's
# pending entries (claimed, not settled).
STATS = READ_PRELUDE + """
local oldest = redis.call('ZRANGE', k('active'), 0, 0, 'WITHSCORES')
local pending = 0
if redis.call('EXISTS', k('stream')) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', k('stream'))) do
    for i = 1, #g, 2 do if g[i] == 'pending' then pending = pending + g[i + 1] end end
  end
end
return {redis.call('ZCARD', k('active')), oldest[2] or '', redis.call('SCARD', k('disabled')),
        redis.call('ZCOUNT', k('due'), '-inf', ARGV[2]), pending}
"""
