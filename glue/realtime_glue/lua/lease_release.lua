-- lease_release: give a partition's lease up at once (a graceful stop or a
-- rebalance), only for the holder of its token, so another instance can take
-- it without waiting for it to expire.
-- ARGV: token. Returns 1 if released, 0 if the token did not hold it.
local lease = KEYS[1]
local token = ARGV[1]

if redis.call('GET', lease) ~= token then
    return 0
end
redis.call('DEL', lease)
return 1
