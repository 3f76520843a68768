"""`tokentail chat`: a run's answer streamed to the terminal, progress on stderr."""

import click

from shared.events import Event
from tokentail.client import Tokentail, TokentailError


def run_chat(
    url: str,
    question: str | None,
    session_id: str | None,
    model: str | None,
    agent: str | None,
    params: dict[str, object],
    api_key: str | None = None,
) -> int:
    """Returns the exit status: 0 when the last run completed, 1 otherwise."""
    with Tokentail(url, api_key=api_key) as client:
        try:
            if session_id is None:
                created = client.create_session(question, model=model, params=params or None, agent=agent)
                session_id, after = created.session_id, None
            elif question is not None:
                after = client.get_session(session_id)["last_event_id"]  # show only the new run
                client.send(session_id, question, model=model, params=params or None)
            else:
                after = None  # replay the session, then follow it
            status = 1
            for event in client.stream(session_id, last_event_id=after, on_reconnect=_reconnecting):
                status = _show(event, status)
        except TokentailError as exc:
            click.echo(f"tokentail: {exc.message} ({exc.status})", err=True)
            if exc.status == 401 and api_key is None:
                click.echo(
                    "tokentail: this gateway needs an API key: pass --api-key or set TOKENTAIL_API_KEY", err=True
                )
            return 1
    click.echo(f'[session {session_id}: continue with  tokentail chat --session {session_id} "..."]', err=True)
    return status


def _reconnecting(error: Exception, delay: float) -> None:
    click.secho(
        f"\n[connection lost ({type(error).__name__}); reconnecting in {delay:.1f} s...]", err=True, fg="yellow"
    )


def _show(event: Event, status: int) -> int:
    data = event.data
    if event.event == "message.delta":
        click.echo(data["text"], nl=False)
    elif event.event == "run.queued":
        click.secho(f"> {data['input']}", err=True, dim=True)
    elif event.event == "status":
        click.secho(f"\n[{data['text']}]", err=True, dim=True)
    elif event.event == "tool.started":
        click.secho(f"\n[running {data['name']} {data['arguments']}]", err=True, dim=True)
    elif event.event == "tool.completed":
        click.secho(f"[{data['call_id']} done: {data['result']}]", err=True, dim=True)
    elif event.event == "tool.failed":
        click.secho(f"[{data['call_id']} failed: {data['error']}]", err=True, fg="yellow")
    elif event.event == "run.retrying":
        click.secho(f"\n[the worker stopped; retrying (attempt {data['attempt']})]", err=True, fg="yellow")
    elif event.event == "gap":
        click.secho(f"\n[events before {data['first_available']} are gone: {data['reason']}]", err=True, fg="yellow")
    elif event.event == "run.completed":
        click.echo()
        return 0
    elif event.event == "run.failed":
        click.secho(f"\n[failed: {data['error']['message']}]", err=True, fg="red")
        return 1
    elif event.event == "run.cancelled":
        click.secho(f"\n[cancelled: {data['reason']}]", err=True, fg="yellow")
        return 1
    return status
