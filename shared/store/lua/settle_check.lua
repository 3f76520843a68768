-- A reaper is done with an entry of the leases index (or a deliverer with one of the webhooks
-- index): drop it, or (given a score) look again then; unless the entry changed since it was read
-- (a worker that starts a run writes its entry first; so does a new webhook event), so that what
-- came meanwhile is never left out of the index.
-- Keys and arguments: shared/store/scripts/checks.py `SettleCheck`.
-- Returns 1 if settled, 0 if the entry changed since.
if redis.call('ZSCORE', k.index, a.member) ~= a.score then return 0 end
if a.next_score == '' then
  redis.call('ZREM', k.index, a.member)
else
  redis.call('ZADD', k.index, a.next_score, a.member)
end
return 1
