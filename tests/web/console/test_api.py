"""The JSON API on a real queue: scopes, own-messages-only tracking, JSON errors, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from securemail.access.model import Principal, Scope
from securemail.queue import QueueStore
from securemail.web import api, auth, context
from tests.queue.conftest import NOW, message
from tests.web.console.conftest import OPERATOR, account, context_for
from tests.web.console.test_operations import deferred

CITIZEN = Principal(account("alice@agency.govt.nz"), frozenset({Scope.MAILBOX}))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}") as opened:
        yield opened


def client_for(store: QueueStore, principal: Principal) -> TestClient:
    app = FastAPI()
    app.include_router(api.router)
    app.add_exception_handler(api.ApiError, api.error_response)
    web = context_for(store)
    app.dependency_overrides = {
        auth.api_principal: lambda: principal,
        context.web_context: lambda: web,
    }
    return TestClient(app, base_url="https://api.test")


def test_operator_lists_holds_and_reads_entries(store: QueueStore) -> None:
    """An operator token lists the queue, holds an entry and gets JSON errors for bad ids."""
    entry_id = deferred(store)
    client = client_for(store, OPERATOR)
    assert [e["id"] for e in client.get("/api/v1/queue").json()["entries"]] == [entry_id]
    assert client.post(f"/api/v1/queue/{entry_id}/hold").json()["state"] == "held"
    again = client.post(f"/api/v1/queue/{entry_id}/hold")
    assert again.status_code == 409 and again.json()["error"] == "queue-bad-state"
    missing = client.get("/api/v1/queue/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "queue-entry-not-found"
    assert client.get("/api/v1/status").json()["counts"]["held"] == 1


def test_queue_pages_and_says_when_more_exist(store: QueueStore) -> None:
    """/queue gives one page, newest first, with the total and where the next page starts;
    a bad page is a 422 answer, never a silent cut (/quarantine and /failures page alike:
    tests/web/test_api_operator.py)."""
    made = [store.enqueue(message(), NOW + timedelta(seconds=n)) for n in range(5)]
    client = client_for(store, OPERATOR)
    first = client.get("/api/v1/queue", params={"limit": 2}).json()
    assert [e["id"] for e in first["entries"]] == made[:-3:-1]
    assert (first["total"], first["more"], first["next_offset"]) == (5, True, 2)
    last = client.get("/api/v1/queue", params={"limit": 2, "offset": 4}).json()
    assert [e["id"] for e in last["entries"]] == made[:1] and not last["more"]
    oldest = client.get("/api/v1/queue", params={"limit": 1, "order": "oldest"}).json()
    assert [e["id"] for e in oldest["entries"]] == made[:1]
    assert client.get("/api/v1/queue", params={"limit": 501}).status_code == 422


def test_mailbox_token_tracks_only_its_own_mail(store: QueueStore) -> None:
    """A mailbox token cannot reach operator endpoints and tracks only its own messages."""
    deferred(store)
    client = client_for(store, CITIZEN)
    refused = client.get("/api/v1/queue")
    assert refused.status_code == 403 and refused.json()["error"] == "scope-missing"
    assert client.get("/api/v1/me").json()["addresses"] == ["alice@agency.govt.nz"]
    [track] = client.get("/api/v1/track/test-1@agency.govt.nz").json()
    assert track["recipient"] == "bob@ministry.govt.nz"
    other = client_for(store, Principal(account("eve@agency.govt.nz"), frozenset({Scope.MAILBOX})))
    assert other.get("/api/v1/track/test-1@agency.govt.nz").status_code == 404


def test_openapi_describes_every_response(store: QueueStore) -> None:
    """The OpenAPI document has a typed schema for each endpoint's answer and its errors."""
    document = client_for(store, OPERATOR).get("/openapi.json").json()
    for path in ("/api/v1/queue", "/api/v1/me", "/api/v1/track/{message_id}"):
        answers = document["paths"][path]["get"]["responses"]
        assert "schema" in answers["200"]["content"]["application/json"]
        assert answers["403"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
