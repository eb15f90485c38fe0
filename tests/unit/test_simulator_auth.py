"""Tokens like DataConnect's accounts service: grants, errors, expiry, refresh, revocation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from publisher.simulator import TOKEN_PATH, ManualClock, Simulator, SimulatorSettings
from publisher.simulator.testing import login, password_form, window

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 2, 2, tzinfo=UTC)
SETTINGS = SimulatorSettings(
    default_rows=500, profiles=16, history_start=START, history_end=END, token_ttl=600
)
WINDOW = window(START, END, SETTINGS)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(END)


@pytest.fixture
def client(clock: ManualClock) -> Iterator[httpx.Client]:
    sim = Simulator(SETTINGS, clock)
    with httpx.Client(transport=sim.transport(), base_url="http://dataconnect.test") as c:
        yield c


def deltas(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.get("/deltas/Discussions", params=WINDOW, headers=headers)


def refresh_form(refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": SETTINGS.client_id,
        "client_secret": SETTINGS.client_secret.get_secret_value(),
        "refresh_token": refresh_token,
    }


def test_password_grant_returns_the_documented_fields(client: httpx.Client) -> None:
    response = client.post(TOKEN_PATH, data=password_form(SETTINGS))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token"}
    assert body["expires_in"] == 600
    assert deltas(client, {"Authorization": f"Bearer {body['access_token']}"}).status_code == 200


def test_default_lifetime_is_the_vendor_example() -> None:
    assert SimulatorSettings().token_ttl == 43199


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": ""}, "unsupported_grant_type"),
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"password": "wrong"}, "invalid_grant"),
        ({"username": "mallory"}, "invalid_grant"),
    ],
)
def test_token_errors_are_400_with_oauth2_codes(
    client: httpx.Client, change: dict[str, str], code: str
) -> None:
    response = client.post(TOKEN_PATH, data=password_form(SETTINGS) | change)
    assert response.status_code == 400
    assert response.json()["error"] == code


def test_token_endpoint_only_takes_post(client: httpx.Client) -> None:
    assert client.get(TOKEN_PATH, params=password_form(SETTINGS)).status_code == 405


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer nope", "Basic abc"])
def test_data_requests_need_a_valid_bearer_token(client: httpx.Client, header: str | None) -> None:
    response = deltas(client, {} if header is None else {"Authorization": header})
    assert response.status_code == 401
    assert response.json() == {
        "Error": True,
        "Message": "Authorization has been denied for this request.",
    }


def test_access_token_expires_with_the_clock(client: httpx.Client, clock: ManualClock) -> None:
    headers = login(client, SETTINGS)
    clock.advance(599)
    assert deltas(client, headers).status_code == 200
    clock.advance(1)
    assert deltas(client, headers).status_code == 401


def test_refresh_revokes_the_old_access_token_and_the_used_refresh_token(
    client: httpx.Client,
) -> None:
    first = client.post(TOKEN_PATH, data=password_form(SETTINGS)).json()
    second = client.post(TOKEN_PATH, data=refresh_form(first["refresh_token"]))
    assert second.status_code == 200
    new = second.json()
    assert new["access_token"] != first["access_token"]
    assert deltas(client, {"Authorization": f"Bearer {first['access_token']}"}).status_code == 401
    assert deltas(client, {"Authorization": f"Bearer {new['access_token']}"}).status_code == 200
    again = client.post(TOKEN_PATH, data=refresh_form(first["refresh_token"]))
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_admin_expire_forces_a_refresh_and_revoke_forces_a_new_login(
    client: httpx.Client,
) -> None:
    tokens = client.post(TOKEN_PATH, data=password_form(SETTINGS)).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.post("/_simulator/tokens/expire").json() == {"expired": 1}
    assert deltas(client, headers).status_code == 401
    refreshed = client.post(TOKEN_PATH, data=refresh_form(tokens["refresh_token"])).json()
    assert (
        deltas(client, {"Authorization": f"Bearer {refreshed['access_token']}"}).status_code == 200
    )
    assert client.post("/_simulator/tokens/expire", params={"mode": "revoke"}).status_code == 200
    assert (
        deltas(client, {"Authorization": f"Bearer {refreshed['access_token']}"}).status_code == 401
    )
    refused = client.post(TOKEN_PATH, data=refresh_form(refreshed["refresh_token"]))
    assert refused.json()["error"] == "invalid_grant"
    assert deltas(client, login(client, SETTINGS)).status_code == 200


def test_session_cookie_is_set_after_auth_and_counted_when_sent_back(
    client: httpx.Client,
) -> None:
    headers = login(client, SETTINGS)
    first = deltas(client, headers)
    assert first.cookies.get("DataConnectState")
    second = deltas(client, headers)  # httpx sends the cookie back
    assert "set-cookie" not in second.headers
    stats = client.get("/_simulator/stats").json()
    assert stats["requests_with_session_cookie"] == 1
    assert stats["token_requests"] == 1


def test_secrets_stay_out_of_the_settings_repr() -> None:
    assert SETTINGS.client_secret.get_secret_value() not in repr(SETTINGS)
    assert SETTINGS.password.get_secret_value() not in repr(SETTINGS)
