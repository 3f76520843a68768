"""worker/process/webhook_delivery.py's pure part: how long a webhook event waits before it is posted again.
(Delivery itself, to a receiver on loopback: tests/integration/test_webhooks.py.)"""

from tokentail.worker.process.webhook_delivery import MAX_DELAY_SECONDS, retry_delay


def test_retries_wait_longer_as_the_event_ages_up_to_a_bound() -> None:
    assert 0.9 <= retry_delay(0) <= 1.1
    assert 90 <= retry_delay(200) <= 110
    assert retry_delay(10**6) <= MAX_DELAY_SECONDS * 1.1
