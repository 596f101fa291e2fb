"""The account pages: password change, TOTP enrolment, app passwords, sole use."""

from __future__ import annotations

from fastapi.testclient import TestClient

from securemail.accounts import totp
from securemail.web.context import WebContext
from securemail.web.sessions import COOKIE
from tests.web.conftest import ALICE, PASSWORD, Clock, csrf_of, post, sign_in

NEW = "a different long passphrase 2026"


def test_change_password_needs_the_current_one(client: TestClient, web: WebContext) -> None:
    """A wrong current password changes nothing; the right one changes it."""
    sign_in(client)
    wrong = post(client, "/account/password", {"current": "nope", "new": NEW, "confirm": NEW})
    assert wrong.status_code == 403 and "not right" in wrong.text
    right = post(client, "/account/password", {"current": PASSWORD, "new": NEW, "confirm": NEW})
    assert right.status_code == 200 and "password is changed" in right.text
    client.cookies.clear()
    assert sign_in(client, password=PASSWORD).status_code == 401
    assert sign_in(client, password=NEW).status_code == 303


def test_password_change_ends_other_sessions(web: WebContext, client: TestClient) -> None:
    """Other browsers signed in to the account are signed out by a password change."""
    sign_in(client)
    other = client.cookies[COOKIE]
    client.cookies.clear()
    sign_in(client)
    post(client, "/account/password", {"current": PASSWORD, "new": NEW, "confirm": NEW})
    assert client.get("/account").status_code == 200
    client.cookies.set(COOKIE, other)
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_totp_enrolment(client: TestClient, web: WebContext, clock: Clock) -> None:
    """Setting up TOTP shows an inline SVG QR code, and the right code turns it on."""
    sign_in(client)
    page = post(client, "/account/totp", {"current": PASSWORD})
    assert page.status_code == 200 and "<svg" in page.text and "<script" not in page.text
    secret = page.text.split('class="secret">')[1].split("<")[0]
    code = totp.code_at(secret, totp.time_step(clock.now))
    token = csrf_of(page.text)
    done = client.post(
        "/account/totp/confirm",
        data={"csrf": token, "code": code},
        headers={"Origin": "https://testserver"},
    )
    assert done.status_code == 200 and web.accounts.service.get(ALICE).totp_enrolled


def test_app_password_create_shown_once_and_revoke(client: TestClient, web: WebContext) -> None:
    """A new app password is shown once, listed by id only, and can be revoked."""
    sign_in(client)
    made = post(client, "/account/app-passwords", {"current": PASSWORD, "label": "laptop"})
    (listed,) = web.accounts.service.app_passwords(ALICE)
    shown = made.text.split('class="secret">')[1].split("<")[0]
    assert shown.startswith(listed.id) and shown not in client.get("/account").text
    gone = post(client, f"/account/app-passwords/{listed.id}/revoke", {})
    assert gone.status_code == 303 and web.accounts.service.app_passwords(ALICE) == []


def test_sole_use_acknowledgement(client: TestClient, web: WebContext) -> None:
    """Ticking the box records the acknowledgement."""
    sign_in(client)
    assert post(client, "/account/sole-use", {"agree": "yes"}).status_code == 303
    assert web.accounts.service.get(ALICE).sole_use_acknowledged is not None


def test_time_zone_choice_changes_every_date_shown(client: TestClient, web: WebContext) -> None:
    """Dates are New Zealand time until the account picks a zone, then that zone's time; an
    unknown zone is refused with the reason and changes nothing."""
    sign_in(client)
    post(client, "/account/app-passwords", {"current": PASSWORD, "label": "laptop"})
    # the clock stands at 09:00 UTC on 6 December: 10 pm in New Zealand (NZDT), 9 am in London
    assert "Sun 6 Dec 2026, 10:00 pm" in client.get("/account").text
    changed = post(client, "/account/time-zone", {"zone": "Europe/London"})
    assert changed.status_code == 200 and "shown in Europe/London time" in changed.text
    assert "Sun 6 Dec 2026, 9:00 am" in changed.text
    assert web.accounts.service.get(ALICE).time_zone == "Europe/London"
    refused = post(client, "/account/time-zone", {"zone": "../../etc/passwd"})
    assert refused.status_code == 400 and "not a time zone name" in refused.text
    assert web.accounts.service.get(ALICE).time_zone == "Europe/London"
    back = post(client, "/account/time-zone", {"zone": ""})
    assert "Sun 6 Dec 2026, 10:00 pm" in back.text
    assert web.accounts.service.get(ALICE).time_zone is None
