"""One run of a session, from its arq job to its last event: everything that lives as long as a run.
May import the worker's agent_errors, event_sink, metrics, running, tools, providers and writes/
(what it writes through); never the process (worker/process/), which starts runs and stops them.

job          the arq job that runs one run: started, the agent, its end (`run_agent`)
attempt      one attempt at the run as tokentail drives it: steps, steers, replay, the answer
context      RunContext: what an agent sees while it runs, and how it streams
questions    an attempt's questions (to a person, or to a client's program), batched as asked at once
agents       agents: a prompt, tools and a model, or your own function; loaded by name
agent_loop   the loop of a model-driven agent: the model's answer, its tool calls, its steers
children     a run's child runs: spawned, waited for without a worker, followed; a framework's, shown inline
retry        a provider stream with retries and timeouts around it
usage        what a run costs: its attempts' usage and the total
traces       the worker's spans of a run
recovery/    a takeover's plan, and the replay of a recorded run
"""
