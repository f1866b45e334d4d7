"""What every route needs: settings, the queue producer and the authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from service.api.auth import Authenticator
from service.api.event_hub import EventHub
from service.queue.keys import Keys
from service.queue.producer import Producer
from service.settings import Settings


@dataclass
class AppState:
    settings: Settings
    producer: Producer
    hub: EventHub
    auth: Authenticator
    keys: Keys


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.tta
    return state


def owner_of(request: Request) -> str:
    return app_state(request).auth.owner(request.headers.get("authorization"))
