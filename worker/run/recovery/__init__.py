"""Recovery: what happens when a worker dies or hands a run over: the takeover decision (go on from a
recorded point, or start over) and the replay of what the run recorded before. May import what run/
may (the journal of writes Redis lost is the write side's: worker/writes/lost_writes.py).

- takeover.py: the takeover decision, before the new attempt claims the run (`plan_takeover`).
- replay.py: what the run's record holds that the attempt streams again (`Replay`); the writer asks
  it of each event (`EventWriter.recorded`, worker/writes/writer.py) and appends only the rest, and the
  attempt (worker/run/attempt.py: `Attempt`, `ctx.this_attempt`) drives it, with the run's steps.
"""
