"""Connections to Redis: the clients of the topology the settings name, the commands of every request
and run of a process sent together in one round trip, and which failures are an outage to wait out.
May import the plumbing and the vocabulary.

redis_clients  the clients of both processes (one server, Sentinel, Cluster; the queue's own)
round_trips    commands from concurrent requests or runs, sent together
taken_over     a redis-py connection read by a protocol of tokentail's own (hiredis, no task per reply)
joiner         calls made while a round trip is on its way, sent in the next one (the worker's arq finishes)
outage         which Redis failures are an outage, by redis-py's exception types
"""
