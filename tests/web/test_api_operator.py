"""The operator API beyond the queue: delete, quarantine, failures, directory, keys, lockouts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from securemail.access.model import Scope
from securemail.access.tokens import WebAccess
from securemail.accounts.model import Service
from securemail.queue import QueueStore
from securemail.web.app import make_app
from securemail.web.context import WebContext
from tests.web.conftest import ALICE, ORIGIN
from tests.web.console.test_operations import deferred


@pytest.fixture
def api(web: WebContext) -> Iterator[TestClient]:
    """A client of the whole app holding an operator token of Alice's."""
    with TestClient(make_app(web), base_url=ORIGIN) as client:
        access: WebAccess = client.app.state.access  # type: ignore[attr-defined]
        access.set_operator(ALICE, True)
        _, token = access.token_add(ALICE, "tests", Scope.OPERATOR)
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_delete_removes_an_entry_for_good(api: TestClient, web: WebContext) -> None:
    """DELETE answers 204 and the entry is gone; a second DELETE is a JSON 404."""
    assert isinstance(web.store, QueueStore)  # the fixture's whole store, not only its steering
    entry_id = deferred(web.store)
    assert api.delete(f"/api/v1/queue/{entry_id}").status_code == 204
    gone = api.get(f"/api/v1/queue/{entry_id}")
    assert gone.status_code == 404 and gone.json()["error"] == "queue-entry-not-found"
    assert api.delete(f"/api/v1/queue/{entry_id}").status_code == 404


def test_lockouts_are_listed_and_lifted(api: TestClient, web: WebContext) -> None:
    """Five wrong passwords lock the name; the API lists the lock, lifts it, and says when
    there is nothing to lift or the scope is not one it knows."""
    for _ in range(5):
        login = web.accounts.authenticator.login
        asyncio.run(login(ALICE, "wrong", service=Service.IMAP, source="192.0.2.7"))
    [lock] = api.get("/api/v1/lockouts").json()
    assert (lock["scope"], lock["key"], lock["failures"]) == ("account", ALICE, 5)
    lifted = api.post("/api/v1/lockouts/unlock", json={"scope": "account", "key": ALICE})
    assert lifted.status_code == 204
    assert api.get("/api/v1/lockouts").json() == []
    again = api.post("/api/v1/lockouts/unlock", json={"scope": "account", "key": ALICE})
    assert again.status_code == 404 and again.json()["error"] == "not-locked"
    bad = api.post("/api/v1/lockouts/unlock", json={"scope": "planet", "key": ALICE})
    assert bad.status_code == 400 and bad.json()["error"] == "bad-request"


def test_lists_answer_json_for_an_operator_only(api: TestClient, web: WebContext) -> None:
    """Quarantine and failures are pages, directory and keys lists, for an operator token;
    401 without."""
    for path in ("/quarantine", "/failures?hours=48"):
        answer = api.get(f"/api/v1{path}")
        assert answer.status_code == 200 and isinstance(answer.json()["entries"], list), path
        assert answer.json()["more"] is False
    for path in ("/directory/members", "/keys"):
        answer = api.get(f"/api/v1{path}")
        assert answer.status_code == 200 and isinstance(answer.json(), list), path
    del api.headers["Authorization"]
    assert api.get("/api/v1/quarantine").status_code == 401


def test_a_lone_surrogate_in_a_json_body_is_a_bad_request(api: TestClient) -> None:
    """JSON may spell a lone surrogate ("\\ud800"), which no UTF-8 store can hold: the body
    is refused as a bad request, never a 500."""
    body = '{"scope": "account", "key": "alice\\ud800@example.nz"}'
    refused = api.post(
        "/api/v1/lockouts/unlock", content=body, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 400 and refused.json()["error"] == "bad-request"
