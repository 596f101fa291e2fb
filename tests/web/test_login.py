"""Signing in on the web: password, TOTP, refusals that leak nothing, logout."""

from __future__ import annotations

from fastapi.testclient import TestClient

from securemail.accounts import totp
from securemail.web.context import WebContext
from securemail.web.sessions import COOKIE
from tests.web.conftest import ALICE, ORIGIN, PASSWORD, Clock, csrf_of, sign_in


def enrol_totp(web: WebContext, clock: Clock) -> str:
    uri = web.accounts.service.totp_begin(ALICE)
    secret = uri.split("secret=")[1].split("&")[0]
    web.accounts.service.totp_confirm(ALICE, totp.code_at(secret, totp.time_step(clock.now)))
    clock.advance(30)
    return secret


def test_password_login_sets_a_session_and_opens_the_account(client: TestClient) -> None:
    """The right password redirects home with a session cookie that opens /account."""
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/mail"
    assert ALICE in client.get("/account").text


def test_unknown_and_wrong_are_identical(client: TestClient) -> None:
    """An unknown address and a wrong password get the same status and page."""
    wrong = sign_in(client, password="not the password at all")
    unknown = sign_in(client, name="nobody@mail.example.govt.nz")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text == unknown.text and COOKIE not in wrong.cookies


def test_throttled_login_says_try_later(client: TestClient) -> None:
    """After repeated failures even the right password is told to try again later."""
    for _ in range(12):
        sign_in(client, password="wrong guess number x")
    response = sign_in(client)
    assert response.status_code == 429 and "try again" in response.text


def test_totp_login_needs_the_code(client: TestClient, web: WebContext, clock: Clock) -> None:
    """With TOTP enrolled the password opens only the code step; the right code signs in."""
    secret = enrol_totp(web, clock)
    first = sign_in(client)
    assert first.status_code == 200 and 'name="code"' in first.text
    assert client.get("/account", follow_redirects=False).status_code == 303
    code = totp.code_at(secret, totp.time_step(clock.now))
    done = client.post(
        "/login/code",
        data={"code": code, "csrf": csrf_of(first.text)},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert done.status_code == 303 and ALICE in client.get("/account").text


def test_replayed_code_is_refused(client: TestClient, web: WebContext, clock: Clock) -> None:
    """A TOTP code already used to sign in does not sign in a second time."""
    secret = enrol_totp(web, clock)
    code = totp.code_at(secret, totp.time_step(clock.now))
    for attempt in range(2):
        client.cookies.clear()
        first = sign_in(client)
        done = client.post(
            "/login/code",
            data={"code": code, "csrf": csrf_of(first.text)},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert done.status_code == (303 if attempt == 0 else 401)
    assert "already used" in done.text


def test_strong_auth_without_totp_cannot_sign_in(client: TestClient, web: WebContext) -> None:
    """An account that must use a second factor but has none is told to contact its provider."""
    web.accounts.service.set_strong_auth(ALICE, True)
    response = sign_in(client)
    assert response.status_code == 401 and "contact your mail provider" in response.text
    assert COOKIE not in response.cookies


def test_login_from_a_foreign_origin_is_refused(client: TestClient) -> None:
    """A login form posted from another site is 403 and starts no session."""
    response = client.post(
        "/login",
        data={"name": ALICE, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403 and COOKIE not in response.cookies


def test_logout_ends_the_session_on_the_server(client: TestClient) -> None:
    """After logout the old cookie value opens nothing, even if the browser kept it."""
    sign_in(client)
    cookie = client.cookies[COOKIE]
    token = csrf_of(client.get("/account").text)
    out = client.post(
        "/logout", data={"csrf": token}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert out.status_code == 303
    client.cookies.set(COOKIE, cookie)
    assert client.get("/account", follow_redirects=False).headers["location"] == "/login"
