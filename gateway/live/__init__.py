"""The live reading: the gateway process's one reader of every session it follows, and the Redis
commands that takes (with shared/, the only code that sends Redis a command: tests/unit/project/test_layout.py
`REDIS_ROOMS`). May import the gateway's metrics and shared/.

hub           the process's one reader (`StreamHub`): catch-up reads, live notifications, each follower fed
pubsub        the hub's notifications connections: one to the Redis, or one per primary of a Cluster
subscription  one follower's place in its session's channel, and the hub's direct write to its client
chunk         consecutive events of one session as one read brought them, each encoding made once
first_delta   the time to first token a user feels: each run's first delta written, counted once
"""
