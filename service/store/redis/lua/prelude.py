"""The Lua every script of the Redis store starts with (key helper, lease release), and the
accept function ACCEPT and ADVANCE share; each script module builds on these by import.
Key layout and invariants are described in `service.store.redis.store`.
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
PRELUDE = "#!lua\n" + _COMMON  # starts every script that writes
# starts every script that only reads: those still answer when memory is full
READ_PRELUDE = "#!lua flags=no-writes\n" + _COMMON

# Accepting events, shared by ACCEPT and ADVANCE. ARGV from `base`: four values per event
# (event id, type, data JSON, idempotency key or ''). `routes` is nil to fan each event out
# to every enabled endpoint that wants its type, or per event the one endpoint id it may go
# to ('' for none). Returns the event ids.
ACCEPT_FN = """
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
      targets[#targets + 1] = {id, wanted, #targets + 1}
    end
  end
  -- indexed by type once per call: an event looks only at the endpoints wanting its type
  -- (5,000 endpoints of a type each made every event of a batch walk all 5,000)
  local every, by_type, lists = {}, {}, {}
  for i, t in ipairs(targets) do
    if not t[2] then
      every[#every + 1] = i
    else
      for kind in pairs(t[2]) do
        local l = by_type[kind]
        if not l then l = {}; by_type[kind] = l end
        l[#l + 1] = i
      end
    end
  end
  local function wanting(etype)
    local l = lists[etype]
    if l then return l end
    local typed = by_type[etype] or {}
    l = {}
    for _, i in ipairs(every) do l[#l + 1] = targets[i] end
    for _, i in ipairs(typed) do l[#l + 1] = targets[i] end
    if #every > 0 and #typed > 0 then  -- in listing order, as before the index
      table.sort(l, function(a, b) return a[3] < b[3] end)
    end
    lists[etype] = l
    return l
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
      for _, t in ipairs(wanting(etype)) do
        if not only or only == t[1] then
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
