"""Small helpers for tests that talk to the simulator (in-process or over sockets)."""

from __future__ import annotations

import re
from datetime import datetime

import httpx

from publisher.simulator.app import TOKEN_PATH
from publisher.simulator.settings import SimulatorSettings
from publisher.timefmt import format_request_date, parse_timestamp


def password_form(settings: SimulatorSettings) -> dict[str, str]:
    """The ``grant_type=password`` form the simulator accepts with ``settings``."""
    return {
        "grant_type": "password",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret.get_secret_value(),
        "username": settings.username,
        "password": settings.password.get_secret_value(),
    }


def login(client: httpx.Client, settings: SimulatorSettings) -> dict[str, str]:
    """Get a token with the password grant; return the ``Authorization`` header to send."""
    response = client.post(TOKEN_PATH, data=password_form(settings))
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def window(start: datetime, stop: datetime, settings: SimulatorSettings) -> dict[str, str]:
    """``StartDate``/``StopDate`` spelled as the vendor page does, in the simulator's zone."""
    return {
        "StartDate": format_request_date(start, settings.tzinfo),
        "StopDate": format_request_date(stop, settings.tzinfo),
    }


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def kind_matches(kind: str, value: object) -> bool:
    """Whether ``value`` has a JSON type DataConnect uses for a field of this ``dc_kind``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "guid":
        return isinstance(value, str) and bool(_GUID.match(value))
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind in ("phone", "postal"):
        return number or isinstance(value, str)
    if kind == "money":
        return number
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "flag":
        return value == "" or isinstance(value, bool)
    if kind == "timestamp":
        if not isinstance(value, str):
            return False
        try:
            parse_timestamp(value)
        except ValueError:
            return False
        return True
    return False
