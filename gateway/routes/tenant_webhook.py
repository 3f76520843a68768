"""REST: the tenant's webhook (docs/api.md#webhooks). API keys only: a browser's token never sees
the signing secret."""

from fastapi import APIRouter, Response

from tokentail.gateway.deps import ApiKeyCallerDep, WebhooksDep
from tokentail.gateway.schemas import ERROR_RESPONSES, SetWebhook, WebhookConfig
from tokentail.shared.features.webhook_messages import HOOKED_EVENTS

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])


@router.get("", responses=ERROR_RESPONSES)
async def get_webhook(caller: ApiKeyCallerDep, webhooks: WebhooksDep) -> WebhookConfig:
    """The tenant's webhook URL and signing secret (made on first use)."""
    url, secret, format_ = await webhooks.tenants.get(caller.tenant)
    return WebhookConfig(url=url, secret=secret, events=list(HOOKED_EVENTS), format=format_)


@router.put("", responses=ERROR_RESPONSES)
async def set_webhook(body: SetWebhook, caller: ApiKeyCallerDep, webhooks: WebhooksDep) -> WebhookConfig:
    """Send the events of the tenant's sessions made from now on to `url` (an allowed URL: 422
    otherwise). Sessions made before keep the URL they were made with; `format` applies to every
    webhook sent from now on."""
    url = webhooks.policy.check(body.url)
    _, secret, format_ = await webhooks.tenants.set_url(caller.tenant, url, body.rotate_secret, body.format)
    return WebhookConfig(url=url, secret=secret, events=list(HOOKED_EVENTS), format=format_)


@router.delete("", status_code=204, responses=ERROR_RESPONSES)
async def delete_webhook(caller: ApiKeyCallerDep, webhooks: WebhooksDep) -> Response:
    """No webhook for sessions made from now on; the secret stays, for what is still being delivered."""
    await webhooks.tenants.remove_url(caller.tenant)
    return Response(status_code=204)
