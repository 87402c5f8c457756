-- instances_beat: this glue instance is alive and sharing the partitions of a
-- feed; returns how many instances are (beat within the ttl), itself included.
-- Instances silent for ten ttls are forgotten.
-- ARGV: instance, ttl_ms.
local instances = KEYS[1]
local instance, ttl_ms = ARGV[1], tonumber(ARGV[2])

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', instances, now, instance)
redis.call('ZREMRANGEBYSCORE', instances, '-inf', now - 10 * ttl_ms)
return redis.call('ZCOUNT', instances, now - ttl_ms, '+inf')
