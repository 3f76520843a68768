-- A run starts a child run (docs/subagents.md; worker/run/children.py), fenced by its lease like an
-- append: the child's record in the session's runs hash (a run of its own: its lease, attempts,
-- questions and steps are its lane's, shared/store/keys.py), `run.spawned` in the session's stream (the
-- child's first event: no `run.queued` comes for it), its id among its parent's `children`, its lane's
-- meta (the session's owner, for its job and its slot), and its job: in its tenant's line, as any run
-- (a tree's runs count against its tenant's caps: one tenant slows only itself), at its tree's place
-- (`line_at`: its root's, so a tree's runs start ahead of the tenant's runs queued after it), holding a
-- slot of the tenant while it runs. Its parent gives its own slot back as it waits (await_children.lua)
-- or follows (shared/features/admission.py's FollowerSlot), so a tenant at its cap never waits on itself.
--
-- The child's id comes from its parent and the call (shared/vocabulary/records.py `child_run_id`): a
-- parent that spawns it again (taken over, or going on after its children) finds it here, and learns
-- its status ('again'), whatever became of it. Refused, changing nothing: a parent with a cancel
-- pending ('cancel'), or with `most_children` children already ('too_many'), or `most_concurrent`
-- still going ('full': it starts the child when one of them ends).
--
-- Keys and arguments: shared/store/scripts/children.py `Spawn` (`s`: the child's lane's; `record`: the
-- child's record, encoded; `spawned`: the data of `run.spawned`).
-- Replies: its `Spawn`'s, or an error starting with FENCED or LOST.
local parent_id, child_id = a.run_id, a.child_id
local refused = check_holder(k, parent_id, a.lease_token, last_seq(k), a.expect)
if refused then return refused end
local known = redis.call('HGET', k.runs, child_id)
if known then return reply.again{status = cjson.decode(known).status} end
if redis.call('HGET', k.meta, 'cancel_run') == parent_id then return reply.cancel{} end
local parent = get_run(k.runs, parent_id)
local children = type(parent.children) == 'table' and parent.children or {}
if #children >= tonumber(a.most_children) then return reply.too_many{} end
local going = 0
for _, id in ipairs(children) do
  local status = get_run(k.runs, id).status
  if status == 'queued' or status == 'running' or status == 'waiting' then going = going + 1 end
end
if going >= tonumber(a.most_concurrent) then return reply.full{} end

local ts, now_ms, now_s = clock()
local seq = add_event(k, s, 'run.spawned', a.spawned, ts)
local child = cjson.decode(a.record)
child.queued_seq, child.queued_at, child.lane = seq, now_s, s.session_id
child.line_at = tonumber(parent.line_at) or math.floor(1000 * (tonumber(parent.queued_at) or now_s))
redis.call('HSET', k.runs, child_id, cjson.encode(child))
children[#children + 1] = child_id
parent.children = children
redis.call('HSET', k.runs, parent_id, cjson.encode(parent))
redis.call('HINCRBY', k.root, 'children', 1)  -- the session is active while it goes (lib/runs.lua's end_run)
local owner = redis.call('HMGET', k.meta, 'tenant', 'user')
redis.call('HSET', k.child, 'active_run', child_id, 'tenant', owner[1] or 'public')
if owner[2] then redis.call('HSET', k.child, 'user', owner[2]) end
queue_job({meta = k.child, runs = k.runs, queue = k.queue, index = k.index}, s, child_id, child_id .. '.s', now_ms, child,
          true)
return reply.started{seq = seq}
