-- Claim the entries of a checks index whose time came (Redis time), up to a count: each moves to
-- now + claim_ms, so no other process takes it meanwhile, and is returned. The claimant settles
-- each with settle_check.lua (score: the claim's), and an entry whose claimant died comes due again.
-- Keys, arguments and reply: shared/store/scripts/checks.py `ClaimChecks`.
local _, now_ms = clock()
local due = redis.call('ZRANGEBYSCORE', k.index, '-inf', now_ms, 'LIMIT', 0, a.count)
local claimed_until = now_ms + tonumber(a.claim_ms)
for _, member in ipairs(due) do redis.call('ZADD', k.index, claimed_until, member) end
return reply.value{score = tostring(claimed_until), members = due}
