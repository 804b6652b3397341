//! The Lua scripts presence runs in Redis, each atomic: the node lease
//! and heartbeat, route writes with their liveness rule, leaving.

/// Milliseconds from Redis `TIME` (the one clock every node agrees on).
pub(super) const NOW_MS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// A route value is `node:conn:gen`; it is live when the node's last beat
/// is within expiry and the node id's current generation is `gen` (so
/// routes left by an earlier holder of a reused id stay dead).
pub(super) const LIVE_FN: &str = r"
local expiry = tonumber(ARGV[3])
local memo = {}
local function node_live(n, g)
  local k = n .. ':' .. g
  local m = memo[k]
  if m ~= nil then return m end
  local s = redis.call('ZSCORE', KEYS[2], n)
  local ok = false
  if s and tonumber(s) > now - expiry then
    ok = redis.call('HGET', KEYS[3], n) == g
  end
  memo[k] = ok
  return ok
end
local function live(v)
  local n, g = string.match(v, '^(%d+):%d+:(%d+)$')
  if not n then return false end
  return node_live(n, g)
end
";

/// KEYS: routes hash, nodes zset, gen hash, sessions hash. ARGV: device,
/// value, expiry, session. The sessions hash holds, per device, its route
/// value and the session (token id) of its connection, apart from the
/// route so that the route value keeps its form.
/// Returns {first (1/0), replaced value or ''}.
pub(super) const CONNECTED: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
local first = 1
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local d, v = fields[i], fields[i + 1]
  if live(v) then
    first = 0
  elseif d ~= ARGV[1] then
    redis.call('HDEL', KEYS[1], d)
    redis.call('HDEL', KEYS[4], d)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. ' ' .. ARGV[4])
local replaced = ''
if old and old ~= ARGV[2] and live(old) then replaced = old end
return {first, replaced}
";

/// KEYS: routes hash, nodes zset, gen hash, sessions hash. ARGV: device,
/// value, expiry, session.
/// Returns 1 when no live device remains, 0 otherwise (also when the
/// field no longer holds this route).
pub(super) const DISCONNECTED: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
local last = 1
for i = 1, #fields, 2 do
  if live(fields[i + 1]) then
    last = 0
  else
    redis.call('HDEL', KEYS[1], fields[i])
    redis.call('HDEL', KEYS[4], fields[i])
  end
end
return last
";

/// KEYS: lease (unused), nodes zset, gen hash, then one routes hash per
/// route. ARGV: this node's id, unused, expiry, then device and value per
/// route. Writes each route unless the device's route names another node
/// that is live (it connected there while this node could not write);
/// returns the 0-based indices of those not written.
pub(super) const RESTORE: &str = r"
local me = ARGV[1]
local out = {}
for i = 4, #KEYS do
  local a = 2 * (i - 4) + 4
  local d, v = ARGV[a], ARGV[a + 1]
  local cur = redis.call('HGET', KEYS[i], d)
  if cur and string.match(cur, '^(%d+):') ~= me and live(cur) then
    table.insert(out, i - 4)
  else
    redis.call('HSET', KEYS[i], d, v)
  end
end
return out
";

/// KEYS: nodes zset, gen hash. ARGV: prefix, token, expiry, start, fixed.
/// Takes the first free id from `start` on (only `start` when fixed).
/// Returns {id, gen} or {-1, 0}.
pub(super) const ALLOCATE: &str = r"
for i = 0, 1023 do
  local id = (tonumber(ARGV[4]) + i) % 1024
  local lease = ARGV[1] .. ':node:' .. id
  if redis.call('SET', lease, ARGV[2], 'NX', 'PX', ARGV[3]) then
    local gen = redis.call('HINCRBY', KEYS[2], id, 1)
    redis.call('ZADD', KEYS[1], now, id)
    return {id, gen}
  end
  if ARGV[5] == '1' then break end
end
return {-1, 0}
";

/// KEYS: lease, nodes zset, gen hash. ARGV: token, expiry, id, gen.
/// Returns {status, live ids...}: status 1 beat, 2 lease taken back after
/// it expired, -1 lease held by another instance.
pub(super) const HEARTBEAT: &str = r"
local cur = redis.call('GET', KEYS[1])
local status = 1
if cur == false then
  local g = redis.call('HGET', KEYS[3], ARGV[3])
  if g and g ~= ARGV[4] then return {-1} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
  status = 2
elseif cur ~= ARGV[1] then
  return {-1}
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('ZADD', KEYS[2], now, ARGV[3])
local out = {status}
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. string.format('%d', now - tonumber(ARGV[2])), '+inf')
for _, id in ipairs(ids) do table.insert(out, tonumber(id)) end
return out
";

/// KEYS: lease, nodes zset. ARGV: token, id. Leaves the cluster at once
/// (only if the lease still is ours).
pub(super) const LEAVE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
";
