"""The operator console's pages on a real queue, with webcore's dependencies stood in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from securemail.queue import Direction, NewMessage, QueueStore, State
from securemail.replies import ok
from securemail.web import auth, console, context
from securemail.web.app import mount_static
from tests.queue.conftest import NOW, message
from tests.web.console.conftest import OPERATOR, context_for
from tests.web.console.test_operations import deferred

ORIGIN = "https://console.test"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}") as opened:
        yield opened


def client_for(store: QueueStore, *, csrf_ok: bool = True) -> TestClient:
    app = FastAPI()
    mount_static(app)
    app.include_router(console.router)
    web = context_for(store)

    def csrf(request: Request) -> None:
        if not csrf_ok:
            raise HTTPException(403, "csrf")

    app.dependency_overrides = {
        auth.operator: lambda: OPERATOR,
        auth.csrf_protect: csrf,
        context.web_context: lambda: web,
    }
    return TestClient(app, base_url=ORIGIN)


def test_queue_page_filters_and_entry_shows_headers(store: QueueStore) -> None:
    """The queue lists the entry with a labelled filter form; its page shows headers only."""
    entry_id = deferred(store)
    client = client_for(store)
    page = client.get("/console/queue", params={"state": "deferred", "text": "bob@"})
    assert page.status_code == 200 and entry_id in page.text
    assert '<label for="text">' in page.text and "<caption>" in page.text
    assert entry_id not in client.get("/console/queue", params={"state": "held"}).text
    detail = client.get(f"/console/queue/{entry_id}")
    assert "Rates notice" in detail.text and "secret body text" not in detail.text
    assert 'name="csrf" value="csrf-1"' in detail.text


def test_queue_page_pages_newest_first_and_says_how_many(store: QueueStore) -> None:
    """Past one page the queue says which entries of how many it shows and links the next
    and previous pages with the filters kept; nothing hides the newest."""
    made = [store.enqueue(message(), NOW + timedelta(seconds=n)) for n in range(5)]
    client = client_for(store)
    first = client.get("/console/queue", params={"limit": 2, "text": "bob@"}).text
    assert "newest first: 1 to 2 of 5" in first
    assert made[4] in first and made[3] in first and made[0] not in first
    [after] = re.findall(r'<a href="([^"]+)" rel="next">Next 2 \(3 more\)</a>', first)
    assert "offset=2" in after and "text=bob%40" in after
    last = client.get("/console/queue", params={"limit": 2, "offset": 4}).text
    assert "newest first: 5 to 5 of 5" in last and made[0] in last
    assert 'rel="prev"' in last and 'rel="next"' not in last


def test_a_delivered_entry_offers_no_hold_or_retry(store: QueueStore) -> None:
    """Only the actions its state allows are offered: a delivered entry can only be deleted."""
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(entry_id, {"bob@ministry.govt.nz": ok()}, NOW)
    page = client_for(store).get(f"/console/queue/{entry_id}").text
    assert "Delete entry" in page
    assert "Hold entry" not in page and "Retry entry" not in page
    waiting = client_for(store).get(f"/console/queue/{deferred(store)}").text
    assert "Hold entry" in waiting and "Retry entry" in waiting and "Release entry" not in waiting


def test_hold_release_and_delete_by_form(store: QueueStore) -> None:
    """POST forms hold and release an entry (303 back to it) and delete it."""
    entry_id = deferred(store)
    client = client_for(store)
    held = client.post(f"/console/queue/{entry_id}/hold", data={"csrf": "csrf-1"})
    assert held.status_code == 200 and store.get(entry_id).state is State.HELD  # type: ignore[union-attr]
    refused = client.post(f"/console/queue/{entry_id}/hold", data={"csrf": "csrf-1"})
    assert refused.status_code == 409 and "queue-bad-state" in refused.text
    client.post(f"/console/queue/{entry_id}/release", data={"csrf": "csrf-1"})
    assert store.get(entry_id).state is State.DEFERRED  # type: ignore[union-attr]
    gone = client.post(f"/console/queue/{entry_id}/delete", data={"csrf": "csrf-1"})
    assert gone.status_code == 200 and store.get(entry_id) is None
    assert client.get(f"/console/queue/{entry_id}").status_code == 404


def test_a_post_without_csrf_changes_nothing(store: QueueStore) -> None:
    """When csrf_protect refuses, the entry is not held."""
    entry_id = deferred(store)
    refused = client_for(store, csrf_ok=False).post(f"/console/queue/{entry_id}/hold")
    assert refused.status_code == 403 and store.get(entry_id).state is State.DEFERRED  # type: ignore[union-attr]


def test_status_quarantine_and_failures_pages(store: QueueStore) -> None:
    """The status, quarantine and failures pages render with their tables."""
    deferred(store)
    client = client_for(store)
    status = client.get("/console/")
    assert status.status_code == 200
    assert "No directory accepted yet" in status.text
    for path in ("/console/quarantine", "/console/failures?hours=48"):
        page = client.get(path)
        assert page.status_code == 200 and 'scope="col"' in page.text


def test_bulk_hold_by_checkboxes_with_a_preview(store: QueueStore) -> None:
    """The queue page has a checkbox per entry; a preview changes nothing and offers to
    apply; applying holds the deferred entry and refuses the delivered one, saying why."""
    waiting = deferred(store)
    done = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(done, {"bob@ministry.govt.nz": ok()}, NOW)
    client = client_for(store)
    page = client.get("/console/queue")
    assert f'name="ids" value="{waiting}"' in page.text and f'value="{done}"' in page.text
    form = {"csrf": "csrf-1", "action": "hold", "ids": [waiting, done]}
    preview = client.post("/console/queue/bulk", data=form | {"dry_run": "true"})
    assert preview.status_code == 409 and "would hold" in preview.text
    assert "delivered entries cannot be held" in preview.text
    assert store.get(waiting).state is State.DEFERRED  # type: ignore[union-attr]
    assert f'<input type="hidden" name="ids" value="{waiting}">' in preview.text
    assert f'<input type="hidden" name="ids" value="{done}">' not in preview.text
    applied = client.post("/console/queue/bulk", data=form | {"dry_run": "false"})
    assert "Hold: 1 changed, 1 refused" in applied.text
    assert store.get(waiting).state is State.HELD  # type: ignore[union-attr]
    assert store.get(done).state is State.DELIVERED  # type: ignore[union-attr]


def test_bulk_post_without_csrf_changes_nothing(store: QueueStore) -> None:
    """When csrf_protect refuses a bulk form, nothing is held."""
    entry_id = deferred(store)
    refused = client_for(store, csrf_ok=False).post(
        "/console/queue/bulk", data={"action": "hold", "ids": [entry_id]}
    )
    assert refused.status_code == 403 and store.get(entry_id).state is State.DEFERRED  # type: ignore[union-attr]


def test_queue_page_shows_the_upstream_backlog_and_key_holds(store: QueueStore) -> None:
    """An upstream queue's backlog per member and the mail held for a key head the queue
    page; without either, no such table."""
    client = client_for(store)
    assert "Waiting for a gateway or a key" not in client.get("/console/queue").text
    upstream = message()
    store.enqueue(
        NewMessage(
            Direction.OUTBOUND, "ministry", upstream.mail_from, upstream.recipients,
            upstream.body, client="peer 127.0.0.9", kind="upstream", auth="agency",
        ),
        NOW,
    )  # fmt: skip
    store.enqueue(message(direction=Direction.INBOUND), NOW)
    [inbound] = store.claim(Direction.INBOUND, NOW, 1)
    store.hold_for_key(inbound.id, "no key", NOW)
    page = client.get("/console/queue").text
    assert "Waiting for a gateway or a key" in page
    assert "<td>ministry</td><td>1</td><td>its gateway" in page
    assert "<td>agency</td><td>1</td><td>its key (key-unavailable)" in page
