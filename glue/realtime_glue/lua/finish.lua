-- finish: forget each job that was processed, as Thoonk's finish does, for a
-- batch of ids in one round trip. Ids no longer claimed (reclaimed after a
-- lost heartbeat) are skipped and counted.
-- ARGV: notify ("1" sends job.finish notices), id, result, id, result, ...
local claimed = KEYS[1]
local cancelled = KEYS[2]
local published = KEYS[3]
local finishes = KEYS[4]
local items = KEYS[5]
local claimedby = KEYS[6]
local finish_channel = KEYS[7]
local notify = ARGV[1] == '1'

local finished = 0
for i = 2, #ARGV, 2 do
    local id, result = ARGV[i], ARGV[i + 1]
    if redis.call('ZREM', claimed, id) == 1 then
        redis.call('HDEL', cancelled, id)
        redis.call('ZREM', published, id)
        redis.call('INCR', finishes)
        redis.call('HDEL', items, id)
        redis.call('HDEL', claimedby, id)
        if notify then
            redis.call('PUBLISH', finish_channel, id .. '\0' .. result)
        end
        finished = finished + 1
    end
end
return finished
