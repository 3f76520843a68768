"""FastAPI dependencies: the clients and settings the app's lifespan opened."""

from typing import Annotated

from fastapi import Depends, Request

from gateway.shutdown import StreamShutdown
from gateway.tail import StreamTail
from shared.settings import Settings
from shared.store import SessionStore


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.store
    return store


def _tail(request: Request) -> StreamTail:
    tail: StreamTail = request.app.state.tail
    return tail


def _shutdown(request: Request) -> StreamShutdown:
    shutdown: StreamShutdown = request.app.state.shutdown
    return shutdown


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[SessionStore, Depends(_store)]
TailDep = Annotated[StreamTail, Depends(_tail)]
ShutdownDep = Annotated[StreamShutdown, Depends(_shutdown)]
