-- cancel: give claimed jobs back to the queue. With count_failure = "1" the
-- job's failure count rises (Thoonk's cancel); a shutdown releases without it.
-- KEYS: claimed, cancelled, ids, claimedby
-- ARGV: count_failure, id, id, ...
local released = 0
for i = 2, #ARGV do
    local id = ARGV[i]
    if redis.call('ZREM', KEYS[1], id) == 1 then
        if ARGV[1] == '1' then
            -- A failed job goes to the back, so it cannot block the queue.
            redis.call('HINCRBY', KEYS[2], id, 1)
            redis.call('LPUSH', KEYS[3], id)
        else
            -- A released job was never tried: it keeps its place at the front.
            redis.call('RPUSH', KEYS[3], id)
        end
        redis.call('HDEL', KEYS[4], id)
        released = released + 1
    end
end
return released
