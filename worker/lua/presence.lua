-- presence.lua — a shared token's presence set.
-- KEYS[1] sw:{R}:presence (zset member -> expiry ms), KEYS[2]
-- sw:{R}:members (set), KEYS[3] sw:{R} (hash); ARGV[1] op
-- (sw_presence_op_t), ARGV[2] presence ttl_ms, ARGV[3] token ttl_ms,
-- ARGV[4..] members (applied in calls of up to 1000 members). "before" is
-- the count including expired entries: that is the count last published,
-- so a reap that drops entries publishes too. Returns the live count.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = string.format('%d', now + tonumber(ARGV[2]))
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local op = ARGV[1]
for c = 4, #ARGV, 1000 do
  local last = math.min(#ARGV, c + 999)
  local z, m = {}, {}
  for i = c, last do
    z[#z + 1] = exp; z[#z + 1] = ARGV[i]; m[#m + 1] = ARGV[i]
  end
  if op == '1' then
    redis.call('ZADD', KEYS[1], unpack(z))
    redis.call('SADD', KEYS[2], unpack(m))
  elseif op == '2' then
    local gone = {}
    for _, t in ipairs(m) do
      if redis.call('EXISTS', 'sw:{' .. t .. '}:live') == 0 then gone[#gone + 1] = t end
    end
    if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
  elseif op == '3' then
    redis.call('ZREM', KEYS[1], unpack(m))
    redis.call('SREM', KEYS[2], unpack(m))
  elseif op == '4' then
    redis.call('ZADD', KEYS[1], 'XX', unpack(z))
  end
end
local after = redis.call('ZCARD', KEYS[1])
if after ~= before then
  redis.call('PUBLISH', KEYS[3] .. ':ch', '{"presence":' .. after .. '}')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return after
