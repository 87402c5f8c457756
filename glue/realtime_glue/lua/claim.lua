-- claim: move up to N ready ids into the claimed set in one step, so an id is
-- always either ready or claimed, never in neither (Thoonk's get is not atomic).
-- KEYS: ids, items, claimed, cancelled, claimedby, workers, [mirror ids, mirror items, mirror published, mirror publishes]
-- ARGV: worker, count, mirror ("1" to copy each claimed job into the mirror feed)
-- Returns a flat list: id, item, failures, id, item, failures, ...
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
redis.call('ZADD', KEYS[6], now, ARGV[1])
for _ = 1, tonumber(ARGV[2]) do
    local id = redis.call('RPOP', KEYS[1])
    if not id then break end
    local item = redis.call('HGET', KEYS[2], id)
    if item then
        redis.call('ZADD', KEYS[3], now, id)
        redis.call('HSET', KEYS[5], id, ARGV[1])
        if ARGV[3] == '1' then
            redis.call('LPUSH', KEYS[7], id)
            redis.call('HSET', KEYS[8], id, item)
            redis.call('ZADD', KEYS[9], now, id)
            redis.call('INCR', KEYS[10])
        end
        out[#out + 1] = id
        out[#out + 1] = item
        out[#out + 1] = redis.call('HGET', KEYS[4], id) or '0'
    end
    -- An id without an item was retracted while queued: nothing to claim.
end
return out
