-- trim: drop the oldest ready items of a feed that is only worth so much: those
-- queued longer ago than max_age_ms, then the oldest beyond max_length. Each
-- drop is counted in the dropped hash (field "expired" or "full"), so nothing
-- goes silently. Claimed and stalled items are left alone.
-- Returns {expired, full}.
local ids = KEYS[1]
local items = KEYS[2]
local published = KEYS[3]
local cancelled = KEYS[4]
local dropped = KEYS[5]
local max_age_ms, max_length = tonumber(ARGV[1]), tonumber(ARGV[2])

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

local function drop_oldest()
    local id = redis.call('RPOP', ids)
    redis.call('HDEL', items, id)
    redis.call('ZREM', published, id)
    redis.call('HDEL', cancelled, id)
end

-- The oldest ready id is at the right end (consumed first).
local expired = 0
while true do
    local oldest = redis.call('LINDEX', ids, -1)
    if not oldest then break end
    local queued_at = redis.call('ZSCORE', published, oldest)
    if queued_at and tonumber(queued_at) >= now - max_age_ms then break end
    drop_oldest()
    expired = expired + 1
end
local full = 0
while redis.call('LLEN', ids) > max_length do
    drop_oldest()
    full = full + 1
end
if expired > 0 then redis.call('HINCRBY', dropped, 'expired', expired) end
if full > 0 then redis.call('HINCRBY', dropped, 'full', full) end
return {expired, full}
