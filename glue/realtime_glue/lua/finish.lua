-- finish: forget each job that was processed, as Thoonk's finish does, for a
-- batch of ids in one round trip. Only claims this worker still holds are
-- finished: one reclaimed (its lease expired) and perhaps claimed by another
-- worker is skipped, so it is never finished twice nor under another's feet.
-- ARGV: worker, notify ("1" sends job.finish notices), id, result, id, result, ...
local claimed = KEYS[1]
local cancelled = KEYS[2]
local published = KEYS[3]
local finishes = KEYS[4]
local items = KEYS[5]
local claimedby = KEYS[6]
local finish_channel = KEYS[7]
local worker, notify = ARGV[1], ARGV[2] == '1'

local finished = 0
for i = 3, #ARGV, 2 do
    local id, result = ARGV[i], ARGV[i + 1]
    if redis.call('HGET', claimedby, id) == worker and redis.call('ZREM', claimed, id) == 1 then
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
