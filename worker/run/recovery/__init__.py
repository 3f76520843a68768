"""Recovery: what happens when a worker dies, hands a run over, or Redis loses writes.

The takeover decision (go on from a recorded point, or start over), the replay of what a run
recorded before, and the journal of what a worker wrote, to append again what Redis lost.

- takeover.py: the takeover decision, before the new attempt claims the run (`plan_takeover`).
- replay.py: what the run's record holds that the attempt streams again (`Replay`); the writer asks
  it of each event (`EventWriter.recorded`, worker/run/writer.py) and appends only the rest, and the
  attempt (worker/run/attempt.py: `Attempt`, `ctx.this_attempt`) drives it, with the run's steps.
- lost_writes.py: the journal of a run's last appends, appended again when Redis lost them.
"""
