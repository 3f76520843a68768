"""A session's events, from Redis to one client: the process's one reader (hub), each client's
catch-up then live tail (feed), opening a stream in an encoding (streams), one run's subtree of it
(run_filter), writing it (response), and ending every stream cleanly when the gateway stops (shutdown)."""
