-- heartbeat: the worker is alive, and renews the lease of every claim it holds
-- (the claim's score in the claimed set is when its lease was last renewed).
-- A claim the worker does not hold, such as one whose reply it never got,
-- is not renewed, so it expires and is reclaimed although the worker lives.
-- ARGV: worker, id, id, ... (the ids the worker holds)
-- Returns how many leases were renewed (claims still held by this worker).
local claimed = KEYS[1]
local claimedby = KEYS[2]
local workers = KEYS[3]
local worker = ARGV[1]

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', workers, now, worker)
local renewed = 0
for i = 2, #ARGV do
    local id = ARGV[i]
    if redis.call('HGET', claimedby, id) == worker then
        redis.call('ZADD', claimed, 'XX', now, id)
        renewed = renewed + 1
    end
end
return renewed
