"""Sessions: cookie attributes, rotation at login, idle and absolute timeouts."""

from __future__ import annotations

from fastapi.testclient import TestClient

from securemail.access.store import WebStore
from securemail.web.context import WebContext
from securemail.web.sessions import COOKIE, session_id
from tests.web.conftest import Clock, sign_in


def test_cookie_is_host_prefixed_secure_httponly_strict(client: TestClient) -> None:
    """The session cookie is __Host-, Secure, HttpOnly, SameSite=Strict, Path=/."""
    header = sign_in(client).headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert header.startswith(f"{COOKIE}=") and "domain" not in attributes
    assert {"secure", "httponly", "path"} <= attributes
    assert "samesite=strict" in header.lower() and "path=/;" in header.lower() + ";"


def test_login_rotates_the_session(client: TestClient, web: WebContext) -> None:
    """Signing in again gives a new id and the one presented before no longer works."""
    sign_in(client)
    before = client.cookies[COOKIE]
    sign_in(client)
    after = client.cookies[COOKIE]
    store = WebStore(web.accounts.engine)
    assert before != after and store.session(session_id(before)) is None
    assert store.session(session_id(after)) is not None


def test_only_the_digest_is_stored(client: TestClient, web: WebContext) -> None:
    """The stored id is the SHA-256 of the cookie, never the cookie value."""
    sign_in(client)
    cookie = client.cookies[COOKIE]
    with web.accounts.engine.connect() as conn:
        ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM web_sessions")]
    assert ids == [session_id(cookie)] and cookie not in ids


def test_idle_timeout(client: TestClient, clock: Clock) -> None:
    """A session unused for more than 30 minutes is gone; one used within it lives on."""
    sign_in(client)
    clock.advance(29 * 60)
    assert client.get("/account", follow_redirects=False).status_code == 200
    clock.advance(29 * 60)
    assert client.get("/account", follow_redirects=False).status_code == 200
    clock.advance(31 * 60)
    assert client.get("/account", follow_redirects=False).headers["location"] == "/login"


def test_absolute_timeout(client: TestClient, clock: Clock) -> None:
    """A session in constant use still ends 12 hours after sign-in."""
    sign_in(client)
    for _ in range(12 * 3):
        clock.advance(20 * 60)
        response = client.get("/account", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_a_made_up_cookie_opens_nothing(client: TestClient) -> None:
    """A cookie value the server never issued is treated as signed out."""
    client.cookies.set(COOKIE, "x" * 43)
    assert client.get("/account", follow_redirects=False).headers["location"] == "/login"
