"""Who is calling and what they may do: API keys and stream tokens (auth, tokens), the tenant's
limits (limits), and the identifiers whose unguessability lets a reader in (ids)."""
