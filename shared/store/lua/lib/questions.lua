-- The questions a waiting run waits for (ask.lua), their input ids in the order asked; `run.expiry` has
-- each one's deadline (`at`, ms) and default answer (JSON text) if it takes one when it expires. One
-- question is named alone, as records were before several could be open: it is read as a list of one
-- (and a record of then, with no `expiry`, has its deadline and default answer where it kept them: the
-- answer's text is the last field of the input.received data it precomputed, taken as it is).
local function open_questions(run)
  if type(run.waiting_for) == 'string' then
    if not run.expiry then
      local default = run.on_expiry_received and string.match(run.on_expiry_received, '"answer":(.*)}$')
      run.expiry = {[run.waiting_for] = {at = run.waiting_until, default = default}}
    end
    run.waiting_for = {run.waiting_for}
    run.on_expiry_answers, run.on_expiry_received = nil, nil
  end
  return run.waiting_for or {}
end

-- Run `run_id`'s record (decoded) if it waits for an answer to `input_id`; else nil and the reply that
-- says why not: 'gone' or 'missing' (the session), 'no_run', 'not_waiting' (answered already, expired,
-- cancelled). What answer.lua and expire_question.lua ask first.
local function waiting_run(k, run_id, input_id)
  if redis.call('EXISTS', k.meta) == 0 then
    return nil, redis.call('EXISTS', k.gone) == 1 and 'gone' or 'missing'
  end
  local raw = redis.call('HGET', k.runs, run_id)
  if not raw then return nil, 'no_run' end
  local run = cjson.decode(raw)
  if run.status == 'waiting' then
    for _, open in ipairs(open_questions(run)) do
      if open == input_id then return run end
    end
  end
  return nil, 'not_waiting'
end

-- The earliest deadline of the questions the run waits for, or nil.
local function next_deadline(run)
  local earliest
  for _, input_id in ipairs(open_questions(run)) do
    local at = run.expiry and run.expiry[input_id] and run.expiry[input_id].at
    if at and (not earliest or at < earliest) then earliest = at end
  end
  return earliest
end

-- Take the answer (JSON text) to one of the questions a waiting run waits for (answer.lua; or a reaper,
-- with the answer an expired question takes by default): append `input.received` and record it. The
-- run's answers are a JSON object's text, kept opaque (cjson would round numbers and turn [] into {}):
-- the answer is spliced in, its input id new to it. The last answer the run waits for queues it again
-- (one more of its `resumes`); until then `input.received` names those still open (`waiting_for`).
local function take_answer(k, s, run_id, run, input_id, answer, job_id, ts, now_ms)
  local open = {}
  for _, id in ipairs(open_questions(run)) do
    if id ~= input_id then open[#open + 1] = id end
  end
  local entry = cjson.encode(input_id) .. ':' .. answer
  local answers = run.answers
  if type(answers) == 'table' then answers = cjson.encode(answers) end
  if not answers or answers == '{}' then run.answers = '{' .. entry .. '}'
  else run.answers = string.sub(answers, 1, -2) .. ',' .. entry .. '}' end
  local received = '{"run_id":' .. cjson.encode(run_id) .. ',"input_id":' .. cjson.encode(input_id) .. ',"answer":' .. answer
  if #open > 0 then received = received .. ',"waiting_for":' .. cjson.encode(open) end
  local seq = add_event(k, s, 'input.received', received .. '}', ts)
  if run.expiry then run.expiry[input_id] = nil end
  if #open > 0 then
    run.waiting_for = open
    run.waiting_until = next_deadline(run)
    redis.call('HSET', k.runs, run_id, cjson.encode(run))
    index_lease(k, s, run.waiting_until)
    return seq
  end
  run.status = 'queued'
  run.waiting_for, run.waiting_until, run.expiry = nil, nil, nil
  run.resumes = (run.resumes or 0) + 1
  redis.call('HSET', k.runs, run_id, cjson.encode(run))
  index_lease(k, s, nil)
  queue_job(k, s, run_id, job_id, now_ms, run, true)
  return seq
end
