-- claim: move up to N ready ids into the claimed set in one step, so an id is
-- always either ready or claimed, never in neither (Thoonk's get is not atomic).
-- With mirror = "1", each claimed job is also put on the mirror feed.
-- With a lease token, only the holder of the partition's lease may claim:
-- anyone else gets an error starting with FENCED and claims nothing.
-- Returns a flat list: id, item, failures, id, item, failures, ...
local ids = KEYS[1]
local items = KEYS[2]
local claimed = KEYS[3]
local cancelled = KEYS[4]
local claimedby = KEYS[5]
local workers = KEYS[6]
local mirror_ids = KEYS[7]
local mirror_items = KEYS[8]
local mirror_published = KEYS[9]
local mirror_publishes = KEYS[10]
local lease = KEYS[11]
local worker, count, mirror, lease_token = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4]

if lease_token ~= nil and lease_token ~= '' and redis.call('GET', lease) ~= lease_token then
    return redis.error_reply('FENCED ' .. lease .. ' is not held by ' .. lease_token)
end

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
-- Each claim gets a score of its own, after every claim already in the set, a
-- microsecond apart: the claimed set's order is the claim order, so claims that
-- expire together go back to the queue in the order they were taken (a batch
-- claimed in one millisecond would otherwise be ordered by id). Counted in
-- whole microseconds and written as text: Lua prints numbers with 14 digits.
local score_us = now * 1000
local last = redis.call('ZRANGE', claimed, -1, -1, 'WITHSCORES')
if last[2] then
    score_us = math.max(score_us, math.floor(tonumber(last[2]) * 1000 + 0.5) + 1)
end
local out = {}
redis.call('ZADD', workers, now, worker)
for _ = 1, count do
    local id = redis.call('RPOP', ids)
    if not id then break end
    local item = redis.call('HGET', items, id)
    if item then
        local score = string.format('%.0f.%03d', math.floor(score_us / 1000), score_us % 1000)
        redis.call('ZADD', claimed, score, id)
        score_us = score_us + 1
        redis.call('HSET', claimedby, id, worker)
        if mirror then
            redis.call('LPUSH', mirror_ids, id)
            redis.call('HSET', mirror_items, id, item)
            redis.call('ZADD', mirror_published, now, id)
            redis.call('INCR', mirror_publishes)
        end
        out[#out + 1] = id
        out[#out + 1] = item
        out[#out + 1] = redis.call('HGET', cancelled, id) or '0'
    end
    -- An id without an item was retracted while queued: nothing to claim.
end
return out
