-- release.lua — compare-and-delete of a lease.
-- KEYS[1] lease; ARGV[1] holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SREM', 'sw:holder:{' .. ARGV[1] .. '}', string.sub(KEYS[1], 5, -8))
  return redis.call('DEL', KEYS[1])
end
return 0
