-- Claim the entries of a checks index whose time came (Redis time), up to a count: each moves to
-- now + claim_ms, so no other process takes it meanwhile, and is returned. The claimant settles
-- each with settle_check.lua (score: the claim's), and an entry whose claimant died comes due again.
-- KEYS: the index (zset)   ARGV: count, claim_ms   Returns {claimed score, member, ...}
local _, now_ms = clock()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, ARGV[1])
local claimed_until = now_ms + tonumber(ARGV[2])
local claimed = {tostring(claimed_until)}
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], claimed_until, member)
  claimed[#claimed + 1] = member
end
return claimed
