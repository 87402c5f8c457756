-- adopt: this worker's claims that it does not hold, oldest claim first: claims
-- whose reply never reached it (the connection broke after Redis ran the claim,
-- e.g. Redis killed right then). The worker takes them up before it claims
-- anything newer, so a channel's order holds across the lost reply, instead of
-- their lease expiring and the reclaimer queueing them behind newer jobs.
-- ARGV: worker, count, then the ids the worker holds. Returns id, item, failures, ...
local claimed = KEYS[1]
local items = KEYS[2]
local cancelled = KEYS[3]
local claimedby = KEYS[4]
local worker, count = ARGV[1], tonumber(ARGV[2])
local held = {}
for i = 3, #ARGV do held[ARGV[i]] = true end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', claimed, 0, -1)) do
    if #out >= count * 3 then break end
    if not held[id] and redis.call('HGET', claimedby, id) == worker then
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGET', items, id) or ''
        out[#out + 1] = redis.call('HGET', cancelled, id) or '0'
    end
end
return out
