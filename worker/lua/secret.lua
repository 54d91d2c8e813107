-- secret.lua — the deployment's signing secret.
-- KEYS[1] sw:secret; ARGV[1] the proposal: set when absent, then read.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
