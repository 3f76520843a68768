"""Recovery: what happens when a worker dies, hands a run over, or Redis loses writes.

The takeover decision (go on from a recorded point, or start over), the replay of what a run
recorded before, and the journal of what a worker wrote, to append again what Redis lost.
"""
