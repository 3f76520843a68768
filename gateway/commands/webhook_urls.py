"""Which URL a new session's webhook events go to: its own, checked against the operator's
allowlist, or else its tenant's (shared/features/tenant_webhooks.py)."""

from tokentail.shared.features.tenant_webhooks import TenantWebhooks
from tokentail.shared.features.webhook_policy import WebhookPolicy


class SessionWebhooks:
    def __init__(self, policy: WebhookPolicy, tenants: TenantWebhooks) -> None:
        self.policy = policy
        self.tenants = tenants

    async def url_for(self, tenant: str, requested: str | None = None) -> str | None:
        """The URL a session the tenant makes now reports to; WebhookNotAllowed (422) for a
        requested URL the allowlist refuses."""
        if requested is not None:
            return self.policy.check(requested)
        if not self.policy.enabled:
            return None
        url = await self.tenants.url(tenant)
        return url if url is not None and self.policy.allows(url) else None
