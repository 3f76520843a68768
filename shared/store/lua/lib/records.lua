local function get_run(runs, run_id)
  return cjson.decode(redis.call('HGET', runs, run_id))
end

-- The tombstone names the owner, so another tenant is told 404 for a gone session, as for none.
local function bury(k, ttl, tombstone)
  local tenant = redis.call('HGET', k.meta, 'tenant') or 'public'
  redis.call('SET', k.gone, tenant, 'EX', ttl + tombstone)
end
