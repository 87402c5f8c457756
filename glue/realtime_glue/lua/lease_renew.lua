-- lease_renew: extend a partition's lease by its time to live, only for the
-- holder of its token (a lease that expired, or was taken over, stays lost).
-- ARGV: token, ttl_ms. Returns 1 if renewed, 0 if the token no longer holds it.
local lease = KEYS[1]
local token, ttl_ms = ARGV[1], ARGV[2]

if redis.call('GET', lease) ~= token then
    return 0
end
redis.call('PEXPIRE', lease, ttl_ms)
return 1
