-- commit.lua — the fenced commit.
-- KEYS[1] hash, KEYS[2] lease, KEYS[2 + k] shared hash sw:{R} of shared
-- write k (k = 1..ARGV[9]); ARGV[1] holder, ARGV[2] ttl_ms, ARGV[3]
-- lease_ms, ARGV[4] seq, ARGV[5] flags (1 release, 2 renew the lease, 4
-- refresh the hash TTL), ARGV[6] log field ("" = none), ARGV[7] log
-- entry, ARGV[8] nfields, ARGV[9] nshared, ARGV[10 ..] nfields field,
-- value pairs, then per shared write: expect_seq, new_seq, nfields,
-- flags (1 publish the message, 2 claim priority), message, field, value
-- pairs. 0: the lease is not ours; 2: a shared "_seq" was not expect_seq;
-- 3: another writer claimed priority (nothing written in these cases);
-- 1: committed. The client part is one HSET; the message goes out on
-- channel sw:{R}:ch inside the script, so messages follow commit order.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local nf = tonumber(ARGV[8])
local ns = tonumber(ARGV[9])
local i = 10 + 2 * nf
for k = 1, ns do
  local key = KEYS[2 + k]
  local p = redis.call('GET', key .. ':prio')
  if p and p ~= ARGV[1] then return 3 end
  local cur = redis.call('HGET', key, '_seq')
  if not cur then cur = '0' end
  if cur ~= ARGV[i] then
    if ARGV[i + 3] == '2' or ARGV[i + 3] == '3' then
      redis.call('SET', key .. ':prio', ARGV[1], 'NX', 'PX', 200)
    end
    return 2
  end
  i = i + 5 + 2 * tonumber(ARGV[i + 2])
end
local a = {}
for j = 10, 9 + 2 * nf do a[#a + 1] = ARGV[j] end
if ARGV[4] ~= '0' then a[#a + 1] = '_seq'; a[#a + 1] = ARGV[4] end
if ARGV[6] ~= '' then a[#a + 1] = ARGV[6]; a[#a + 1] = ARGV[7] end
if #a > 0 then redis.call('HSET', KEYS[1], unpack(a)) end
local fl = tonumber(ARGV[5])
if fl % 2 == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', 'sw:holder:{' .. ARGV[1] .. '}', string.sub(KEYS[2], 5, -8))
elseif math.floor(fl / 2) % 2 == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if math.floor(fl / 4) % 2 == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
i = 10 + 2 * nf
for k = 1, ns do
  local key = KEYS[2 + k]
  local n = tonumber(ARGV[i + 2])
  local b = {'_seq', ARGV[i + 1]}
  for j = i + 5, i + 4 + 2 * n do b[#b + 1] = ARGV[j] end
  redis.call('HSET', key, unpack(b))
  redis.call('PEXPIRE', key, ARGV[2])
  if ARGV[i + 3] == '1' or ARGV[i + 3] == '3' then
    redis.call('PUBLISH', key .. ':ch', ARGV[i + 4])
  end
  if ARGV[i + 3] == '2' or ARGV[i + 3] == '3' then redis.call('DEL', key .. ':prio') end
  i = i + 5 + 2 * n
end
return 1
