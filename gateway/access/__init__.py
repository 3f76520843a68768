"""Who is calling and what they may do: API keys and stream tokens (auth, tokens), the tenant's
limits (limits), the identifiers whose unguessability lets a reader in (ids), and where a request
came from: the socket's peer and the client a named proxy forwards (peers). May import the gateway's
metrics and shared/.
"""
