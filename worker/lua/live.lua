-- live.lua — the live-connection keys sw:{T}:live.
-- KEYS[i] sw:{T}:live; ARGV[1] op (1 set, 2 refresh, 3 drop), ARGV[2]
-- ttl_ms, ARGV[2 + i] the socket id for KEYS[i]. Refresh and drop touch a
-- key only while it holds that socket id.
local op = ARGV[1]
for i = 1, #KEYS do
  local sock = ARGV[2 + i]
  if op == '1' then
    redis.call('SET', KEYS[i], sock, 'PX', ARGV[2])
  elseif redis.call('GET', KEYS[i]) == sock then
    if op == '2' then redis.call('PEXPIRE', KEYS[i], ARGV[2])
    else redis.call('DEL', KEYS[i]) end
  end
end
return 1
