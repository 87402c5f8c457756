-- cancel: give claimed jobs back to the queue. With count_failure = "1" the
-- job's failure count rises (Thoonk's cancel); a shutdown releases without it.
-- ARGV: count_failure, id, id, ...
local claimed = KEYS[1]
local cancelled = KEYS[2]
local ids = KEYS[3]
local claimedby = KEYS[4]
local count_failure = ARGV[1] == '1'

local released = 0
for i = 2, #ARGV do
    local id = ARGV[i]
    if redis.call('ZREM', claimed, id) == 1 then
        if count_failure then
            -- A failed job goes to the back, so it cannot block the queue.
            redis.call('HINCRBY', cancelled, id, 1)
            redis.call('LPUSH', ids, id)
        else
            -- A released job was never tried: it keeps its place at the front.
            redis.call('RPUSH', ids, id)
        end
        redis.call('HDEL', claimedby, id)
        released = released + 1
    end
end
return released
