"""The console's records requests: only an operator with the records role reaches them;
with it a Privacy Act export is written into the node's storage, signed and recorded."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from sqlalchemy import select

from securemail.access.model import Principal, Scope
from securemail.config.node import NodeConfig
from securemail.queue import QueueStore
from securemail.records.chain import NewRecord, RecordClass, record
from securemail.records.schema import log
from securemail.storage.engine import transaction
from securemail.web import auth, console, context, records_console
from securemail.web.app import mount_static
from tests.conftest import Pki
from tests.web.console.conftest import NOW, OPERATOR, account, context_for

OFFICER = Principal(
    account(), frozenset({Scope.OPERATOR, Scope.MAILBOX, Scope.RECORDS}), "s1", "csrf-1"
)
MAILBOX_ONLY = Principal(account("aroha@msp.nz"), frozenset({Scope.MAILBOX, Scope.RECORDS}))
AROHA = "aroha@msp.nz"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore.open(f"sqlite:///{tmp_path / 'node.sqlite'}") as opened:
        yield opened


def _client(
    store: QueueStore, principal: Principal, data_dir: Path, pki: Pki, *, csrf_ok: bool = True
) -> TestClient:
    app = FastAPI()
    mount_static(app)
    app.include_router(console.router)
    app.include_router(records_console.router)
    config = SimpleNamespace(name="gw.test", region="NZ", organisations=(), data_dir=data_dir)
    web = dataclasses.replace(
        context_for(store),
        config=cast("NodeConfig", config),
        records_signer=lambda: pki.agency.signer,
    )

    def csrf(request: Request) -> None:
        if not csrf_ok:
            raise HTTPException(403, "csrf")

    app.dependency_overrides = {
        auth.operator: lambda: principal,
        auth.csrf_protect: csrf,
        context.web_context: lambda: web,
    }
    return TestClient(app, base_url="https://console.test")


def _exported(store: QueueStore) -> list[dict[str, object]]:
    query = select(log.c.record).where(log.c.event == "records.exported")
    with transaction(store._engine, "test", write=False) as conn:
        return [json.loads(t) for t in conn.execute(query).scalars()]


def test_an_operator_without_the_records_role_is_refused(
    store: QueueStore, tmp_path: Path, pki: Pki
) -> None:
    """An operator whose session lacks the records role gets 403 on the page and the form,
    and nothing is written or recorded."""
    client = _client(store, OPERATOR, tmp_path, pki)
    assert client.get("/console/records").status_code == 403
    posted = client.post("/console/records", data={"csrf": "csrf-1", "about": AROHA})
    assert posted.status_code == 403
    assert not (tmp_path / "exports").exists()
    assert _exported(store) == []


def test_the_records_scope_without_the_operator_role_is_refused(
    store: QueueStore, tmp_path: Path, pki: Pki
) -> None:
    """The records scope alone (no operator) opens nothing: the role is an operator's."""
    assert not MAILBOX_ONLY.records
    client = _client(store, MAILBOX_ONLY, tmp_path, pki)
    assert client.get("/console/records").status_code == 403


def test_an_officer_exports_into_the_node_storage_and_it_is_recorded(
    store: QueueStore, tmp_path: Path, pki: Pki
) -> None:
    """With the role, the Privacy Act export is written under data_dir/exports with a
    signature, recorded with who made it through the console, and listed on the page."""
    about_her = NewRecord(NOW, RecordClass.ACCOUNT, "account.login.ok", (AROHA,))
    record(store._engine, about_her)
    record(store._engine, NewRecord(NOW, RecordClass.ACCOUNT, "account.login.ok", ("x@y.nz",)))
    client = _client(store, OFFICER, tmp_path, pki)
    page = client.get("/console/records")
    assert page.status_code == 200 and "No export is recorded yet." in page.text
    assert "Records requests" in page.text  # the console navigation links it
    made = client.post("/console/records", data={"csrf": "csrf-1", "kind": "subject",
                                                  "about": AROHA})  # fmt: skip
    assert made.status_code == 201, made.text
    (folder,) = (tmp_path / "exports").iterdir()
    assert (folder / "manifest.json.sig").stat().st_size > 0
    lines = (folder / "records.jsonl").read_text().splitlines()
    assert len(lines) == 1 and AROHA in lines[0]
    (exported,) = _exported(store)
    details = cast("dict[str, str]", exported["details"])
    assert details["by"] == "console:operator@agency.govt.nz"
    assert details["destination"] == str(folder) and details["outside_node_storage"] == "no"
    assert str(folder) in made.text and "1 records" in made.text
    assert str(folder) in client.get("/console/records").text


def test_a_bad_request_or_stale_form_writes_nothing(
    store: QueueStore, tmp_path: Path, pki: Pki
) -> None:
    """A bad date is refused with its reason code; a form failing the CSRF check is 403;
    neither writes a bundle or a record."""
    client = _client(store, OFFICER, tmp_path, pki)
    bad = client.post("/console/records", data={"csrf": "csrf-1", "about": AROHA,
                                                 "start": "yesterday"})  # fmt: skip
    assert bad.status_code == 400 and "records-bad-request" in bad.text
    stale = _client(store, OFFICER, tmp_path, pki, csrf_ok=False)
    assert stale.post("/console/records", data={"about": AROHA}).status_code == 403
    assert not (tmp_path / "exports").exists()
    assert _exported(store) == []


def test_a_long_list_of_exports_says_it_is_cut(store: QueueStore, tmp_path: Path, pki: Pki) -> None:
    """With more exports than the page lists, the newest are shown and the caption says
    the rest are in the log."""
    details = {"kind": "oia", "about": "x", "records": "0", "by": "cli:o", "destination": "d"}
    for _ in range(records_console.SHOWN + 1):
        record(store._engine, NewRecord(NOW, RecordClass.SECURITY, "records.exported",
                                        details=details))  # fmt: skip
    page = _client(store, OFFICER, tmp_path, pki).get("/console/records").text
    assert f"only the newest {records_console.SHOWN} are shown" in page
    assert page.count("<td>cli:o</td>") == records_console.SHOWN
