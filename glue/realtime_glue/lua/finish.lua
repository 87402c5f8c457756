-- finish: forget each job that was processed, as Thoonk's finish does, for a
-- batch of ids in one round trip. Ids no longer claimed (reclaimed after a
-- lost heartbeat) are skipped and counted.
-- KEYS: claimed, cancelled, published, finishes, items, claimedby, job.finish channel
-- ARGV: publish_result ("1" sends job.finish notices), id, result, id, result, ...
local finished = 0
for i = 2, #ARGV, 2 do
    local id = ARGV[i]
    if redis.call('ZREM', KEYS[1], id) == 1 then
        redis.call('HDEL', KEYS[2], id)
        redis.call('ZREM', KEYS[3], id)
        redis.call('INCR', KEYS[4])
        redis.call('HDEL', KEYS[5], id)
        redis.call('HDEL', KEYS[6], id)
        if ARGV[1] == '1' then
            redis.call('PUBLISH', KEYS[7], id .. '\0' .. ARGV[i + 1])
        end
        finished = finished + 1
    end
end
return finished
