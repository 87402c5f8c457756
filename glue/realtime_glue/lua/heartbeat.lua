-- heartbeat: the worker is alive, and renews the lease of every claim it holds
-- (the claim's score in the claimed set is when its lease was last renewed).
-- A claim the worker does not hold, such as one whose reply it never got,
-- is not renewed, so it expires and is reclaimed although the worker lives.
-- Renewing keeps the claimed set in claim order (claim.lua): the claims
-- renewed get new scores in their old order, a microsecond apart, and so do
-- the worker's claims newer than every id it named: those of a claim whose
-- reply has not reached it yet, which would otherwise fall behind older ones.
-- A claim it never learns of is carried along only while it is the newest:
-- once the worker holds a newer one, or nothing, it expires.
-- ARGV: worker, id, id, ... (the ids the worker holds)
-- Returns how many leases were renewed of the ids named (claims still held by this worker).
local claimed = KEYS[1]
local claimedby = KEYS[2]
local workers = KEYS[3]
local worker = ARGV[1]

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', workers, now, worker)
local renewed = 0
local oldest, newest = nil, nil
for i = 2, #ARGV do
    local id = ARGV[i]
    if redis.call('HGET', claimedby, id) == worker then
        local score = redis.call('ZSCORE', claimed, id)
        if score then
            renewed = renewed + 1
            score = tonumber(score)
            if oldest == nil or score < oldest then
                oldest = score
            end
            if newest == nil or score > newest then
                newest = score
            end
        end
    end
end
if oldest == nil then
    return 0
end
-- As text, in whole microseconds: Lua prints numbers with 14 digits.
local score_us = now * 1000
local named = {}
for i = 2, #ARGV do
    named[ARGV[i]] = true
end
local range = redis.call('ZRANGEBYSCORE', claimed, oldest, '+inf', 'WITHSCORES')
for i = 1, #range, 2 do
    local id, score = range[i], tonumber(range[i + 1])
    if (named[id] or score > newest) and redis.call('HGET', claimedby, id) == worker then
        local renewed_score = string.format('%.0f.%03d', math.floor(score_us / 1000), score_us % 1000)
        redis.call('ZADD', claimed, 'XX', renewed_score, id)
        score_us = score_us + 1
    end
end
return renewed
