"""shared/features/: webhooks' messages and policy."""
