"""The contact register's console page and operator API on a real queue and register."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from securemail.access.model import Scope
from securemail.access.tokens import WebAccess
from securemail.contacts.desk import ContactDesk
from securemail.contacts.store import ContactRegister
from securemail.queue import Direction, NewMessage, QueueStore
from securemail.storage.engine import connect
from securemail.web.app import make_app
from securemail.web.context import WebContext
from tests.web.conftest import ALICE, ORIGIN, csrf_of, sign_in

HEMI = "hemi.walker@provider.example.nz"


@pytest.fixture
def desk_web(web: WebContext, tmp_path: Path) -> Iterator[WebContext]:
    """The web fixture with a contact register in its database and requests queued for real."""
    assert isinstance(web.store, QueueStore)
    store = web.store
    register = ContactRegister(connect(f"sqlite:///{tmp_path / 'node.db'}"))  # the queue's

    async def enqueue(message: NewMessage) -> str:
        return store.enqueue(message, web.clock())

    yield dataclasses.replace(web, contacts=ContactDesk(register, enqueue))
    register.close()


@pytest.fixture
def app_client(desk_web: WebContext) -> Iterator[TestClient]:
    with TestClient(make_app(desk_web), base_url=ORIGIN) as client:
        yield client


def _access(client: TestClient) -> WebAccess:
    access: WebAccess = client.app.state.access  # type: ignore[attr-defined]
    return access


def _operator(client: TestClient) -> None:
    _access(client).set_operator(ALICE, True)
    sign_in(client)


def _start(client: TestClient, **fields: str | list[str]) -> object:
    token = csrf_of(client.get("/console/contacts").text)
    return client.post(
        "/console/contacts",
        data={"csrf": token, **fields},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )


def test_console_starts_lists_filters_and_revokes(app_client: TestClient, web: WebContext) -> None:
    """A verification started on the page is queued to the holder and listed as pending;
    the filter finds it by part of its address, and revoking it says revoked."""
    _operator(app_client)
    started = _start(app_client, address=HEMI, purpose="benefit payments", require=["strong-auth"])
    assert started.status_code == 303  # type: ignore[attr-defined]
    assert isinstance(web.store, QueueStore)
    [entry] = web.store.list(direction=Direction.OUTBOUND)
    assert [r.address for r in entry.recipients] == [HEMI] and entry.client == "console"
    page = app_client.get("/console/contacts", params={"address": "hemi.walker"}).text
    assert HEMI in page and "pending" in page and "benefit payments" in page
    assert HEMI not in app_client.get("/console/contacts", params={"address": "nobody"}).text
    ident = page.split('id="verification-', 1)[1].split('"', 1)[0]
    revoked = app_client.post(
        f"/console/contacts/{ident}/revoke",
        data={"csrf": csrf_of(page)},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    assert "<td>revoked</td>" in app_client.get("/console/contacts").text


def test_console_refuses_bad_requests_forged_forms_and_non_operators(
    app_client: TestClient,
) -> None:
    """A bad address is refused with its reason code and nothing listed; a form without the
    CSRF token is refused; a mailbox holder who is not an operator gets 403."""
    sign_in(app_client)
    assert app_client.get("/console/contacts").status_code == 403
    _operator(app_client)
    bad = _start(app_client, address="not-an-address", purpose="x")
    assert bad.status_code == 400 and "bad-contact-request" in bad.text  # type: ignore[attr-defined]
    forged = app_client.post(
        "/console/contacts",
        data={"address": HEMI, "purpose": "x"},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert forged.status_code in (400, 403)
    assert "0 in all" in app_client.get("/console/contacts").text


def test_console_pages_the_register(app_client: TestClient) -> None:
    """Past one page of 50 the page links to the next, which holds the rest."""
    _operator(app_client)
    for n in range(52):
        _start(app_client, address=f"holder{n}@provider.example.nz", purpose="rates")
    first = app_client.get("/console/contacts").text
    assert "52 in all" in first and 'rel="next"' in first and 'rel="prev"' not in first
    second = app_client.get("/console/contacts", params={"offset": 50}).text
    assert second.count('id="verification-') == 2 and 'rel="prev"' in second


@pytest.fixture
def api(app_client: TestClient) -> TestClient:
    _access(app_client).set_operator(ALICE, True)
    _, token = _access(app_client).token_add(ALICE, "tests", Scope.OPERATOR)
    app_client.headers["Authorization"] = f"Bearer {token}"
    return app_client


def test_api_starts_shows_pages_and_revokes(api: TestClient, web: WebContext) -> None:
    """POST starts a pending verification (queued to the holder); GET lists it in the paged
    shape and shows it; revoke makes it revoked; unknown ids are JSON 404s."""
    body = {"address": HEMI, "purpose": "rates", "require": ["sole-use"], "valid_days": 30}
    made = api.post("/api/v1/contacts", json=body)
    assert made.status_code == 201, made.text
    contact = made.json()
    assert (contact["status"], contact["require"]) == ("pending", ["sole-use"])
    assert isinstance(web.store, QueueStore)
    assert len(web.store.list(direction=Direction.OUTBOUND)) == 1
    listed = api.get("/api/v1/contacts", params={"address": "hemi", "limit": 1}).json()
    assert set(listed) == {"entries", "offset", "limit", "total", "more", "next_offset"}
    assert (listed["total"], listed["more"], listed["next_offset"]) == (1, False, None)
    assert api.get(f"/api/v1/contacts/{contact['id']}").json()["address"] == HEMI
    revoked = api.post(f"/api/v1/contacts/{contact['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    missing = api.get("/api/v1/contacts/no-such-id")
    assert missing.status_code == 404 and missing.json()["error"] == "no-such-contact"


def test_api_refuses_bad_requests(api: TestClient) -> None:
    """An unknown requirement or a non-address is a JSON 400 with the reason code; nothing
    is added."""
    for body in (
        {"address": HEMI, "purpose": "rates", "require": ["strong-login"]},
        {"address": "nobody", "purpose": "rates"},
    ):
        refused = api.post("/api/v1/contacts", json=body)
        assert refused.status_code == 400 and refused.json()["error"] == "bad-contact-request"
    assert api.get("/api/v1/contacts").json()["total"] == 0
