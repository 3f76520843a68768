"""What several processes do together, over the store: a gateway queues and a worker starts (fair
admission); a worker delivers what a gateway configured (webhooks, a task's pushes); a worker publishes
what a gateway offers (the agent catalog). May import every other room of shared/.

admission        which queued runs start, and when, across tenants and end users
agent_catalog    what each agent of a deployment says about itself, for the agent protocols
webhook_messages what a webhook carries and how it is signed
webhook_policy   where webhooks may go: the operator's allowlist
tenant_webhooks  each tenant's webhook URL and signing secret
workers          which worker processes are alive, what each runs, and their throughput (heartbeats)
a2a_push         A2A's push configs of a task, and the body a push carries (the one A2A module of shared/)
acp_connections  an ACP connection's record, outbox and prompts, which every gateway serves (the one ACP module)
"""
