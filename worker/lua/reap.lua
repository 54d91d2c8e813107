-- reap.lua — free the leases of a holder that died.
-- ARGV[1] a holder id (a worker that died). Every lease it still holds
-- is deleted; returns how many.
local hs = 'sw:holder:{' .. ARGV[1] .. '}'
local n = 0
for _, t in ipairs(redis.call('SMEMBERS', hs)) do
  local k = 'sw:{' .. t .. '}:lease'
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k); n = n + 1 end
end
redis.call('DEL', hs)
return n
