-- lease_settled: may the holder of a partition's lease start claiming? Only
-- once no claim of the partition is in flight: the previous holder's claims
-- are finished, given back, or reclaimed to the front of the queue. Claiming
-- earlier could publish a channel's next message before its previous one.
-- ARGV: token. Returns -1 if the token does not hold the lease, else the
-- number of claims still in flight (0: settled, claim away).
local lease = KEYS[1]
local claimed = KEYS[2]
local token = ARGV[1]

if redis.call('GET', lease) ~= token then
    return -1
end
return redis.call('ZCARD', claimed)
