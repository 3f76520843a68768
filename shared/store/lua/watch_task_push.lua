-- Mark a session whose tasks may have push configs (A2A's: shared/features/a2a_push.py): from now
-- on add_hook (lib/webhooks.lua) keeps the events its webhooks report for the deliverers, with or without a
-- webhook URL, and they post each to the configs its task has then. Nothing for a session gone.
-- Keys and arguments: shared/store/scripts/sessions.py `WatchTaskPush`. Returns 1 if marked, 0 if missing.
if redis.call('EXISTS', k.meta) == 0 then return 0 end
redis.call('HSET', k.meta, 'a2a_push', '1')  -- the field's name as the first version stored it
return 1
