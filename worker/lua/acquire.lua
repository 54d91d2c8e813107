-- acquire.lua — take a token's lease and read its hash.
-- KEYS[1] hash, KEYS[2] lease, KEYS[3] live key; ARGV[1] holder,
-- ARGV[2] lease_ms. {0, holder}: busy; {1, {field, value, ...}, live}:
-- lease ours, hash read without the replay log's "_log:" fields, and the
-- live connection's socket id ("" none).
local cur = redis.call('GET', KEYS[2])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
elseif not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, cur or ''}
else
  local hs = 'sw:holder:{' .. ARGV[1] .. '}'
  redis.call('SADD', hs, string.sub(KEYS[2], 5, -8))
  redis.call('PEXPIRE', hs, 100 * tonumber(ARGV[2]))
end
local live = redis.call('GET', KEYS[3]) or ''
local h = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #h, 2 do
  if string.sub(h[i], 1, 5) ~= '_log:' then
    out[#out + 1] = h[i]
    out[#out + 1] = h[i + 1]
  end
end
return {1, out, live}
