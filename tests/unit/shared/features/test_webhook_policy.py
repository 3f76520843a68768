"""shared/features/webhook_policy.py: where webhooks may go, the operator's allowlist of URL prefixes."""

import pytest

from tokentail.shared.features.webhook_policy import WebhookNotAllowed, WebhookPolicy

POLICY = WebhookPolicy(["https://Hooks.example.com/tokentail", "http://[::1]:9000/"])


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/tokentail", True),
        ("https://HOOKS.example.com:443/tokentail/a/b?x=1", True),  # host case, default port
        ("https://hooks.example.com/tokentailx", False),
        ("https://hooks.example.com/", False),
        ("http://hooks.example.com/tokentail", False),
        ("https://hooks.example.com:444/tokentail", False),
        ("https://hooks.example.com@evil.io/tokentail", False),
        ("http://[::1]:9000/any", True),
        ("http://[::1]:9001/any", False),
        ("https://hooks.example.com:99999/tokentail", False),  # not a port
        ("ftp://hooks.example.com/tokentail", False),
        ("not a url", False),
    ],
)
def test_the_allowlist_matches_scheme_host_and_port_exactly_then_a_path_prefix(url: str, allowed: bool) -> None:
    assert POLICY.allows(url) is allowed
    if not allowed:
        with pytest.raises(WebhookNotAllowed):
            POLICY.check(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/tokentail/../../admin/x",  # a client resolves .. before posting
        "https://hooks.example.com/tokentail/%2e%2e/%2E%2E/admin",
        "https://hooks.example.com/tokentail/.%2e/admin",
        "https://hooks.example.com/tokentail%2f..%2fadmin",
        "https://hooks.example.com/tokentail/./x",
        "https://hooks.example.com/tokentail/\\..\\admin",
        "https://hooks.example.com/tokentail/a\tb",
        "https://hooks.example.com/tokentail/a\nb",
        "https://hooks.example.com/tokentail/\x01",
        "https://hooks.example.com/tokentail/a b",
        "https://hooks.example.com\r\n/tokentail",
    ],
)
def test_dot_segments_and_control_characters_never_pass_the_allowlist(url: str) -> None:
    # Checked as written, `/tokentail/../../admin` was under `/tokentail`: the worker posted, signed, to /admin.
    assert not POLICY.allows(url)
    with pytest.raises(WebhookNotAllowed):
        POLICY.check(url)


def test_webhooks_are_off_without_an_allowlist() -> None:
    with pytest.raises(WebhookNotAllowed, match="off"):
        WebhookPolicy([]).check("https://hooks.example.com/")
