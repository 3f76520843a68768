"""What a client asks that changes a session, whichever route or socket it comes by. May import the
gateway's access/, live/ (a task waits for its run through the hub), reading/ and schemas, and
shared/; never a route nor a protocol of others (it names none).

turns         asking for a run: the request checked, the tenant's run budget spent, the run queued
questions     answering a run's question (`ctx.ask`): found, checked against its schema, answered
writes        the gateway's writes (`SessionWrites`): each one script, its reply a result or an error
branching     conversations that branch: a fork after a turn, where a client's chat leaves the session
deletion      deleting a session: in Redis at once, and its archive's copy
webhook_urls  which URL a new session's webhook events go to: its own (allowed) or its tenant's
tasks         a run as the agent protocols show it: a task (MCP's Tasks extension, A2A's tasks)
"""
