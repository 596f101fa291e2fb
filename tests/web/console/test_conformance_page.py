"""The console's conformance page: the latest result per member, a regression as an alert,
the runs paged, and each run's report page."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from securemail.accounts.node import Accounts
from securemail.conformance.history import ConformanceHistory
from securemail.conformance.report import Finding, report_document
from securemail.queue import QueueStore
from securemail.web import auth, console, context
from securemail.web.app import mount_static
from tests.queue.conftest import NOW
from tests.web.console.conftest import OPERATOR, context_for

GOOD = [Finding("SM-RECV-2", "tampered", True, "kept"), Finding("SM-TLS-3", "door", True, "530")]
BROKEN = [Finding("SM-RECV-2", "tampered", False, "<b>receipted</b>"), GOOD[1]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore.open(f"sqlite:///{tmp_path / 'node.sqlite'}") as opened:
        yield opened


def _client(store: QueueStore, history: ConformanceHistory) -> TestClient:
    app = FastAPI()
    mount_static(app)
    app.include_router(console.router)
    accounts = cast("Accounts", SimpleNamespace(engine=history.engine))
    web = dataclasses.replace(context_for(store), accounts=accounts)
    app.dependency_overrides = {auth.operator: lambda: OPERATOR, context.web_context: lambda: web}
    return TestClient(app, base_url="https://console.test")


def _record(history: ConformanceHistory, member: str, findings: list[Finding], hours: int) -> str:
    at = NOW + timedelta(hours=hours)
    document = report_document(tester="conformance", member=member, target="127.0.0.1:25",
                               started=at, finished=at, findings=findings, cases=[])  # fmt: skip
    return history.record(document, b"signature").id


def test_a_regression_is_an_alert_and_each_member_shows_its_latest(
    store: QueueStore, tmp_path: Path
) -> None:
    """agency passed, then failed SM-RECV-2: the page alerts with the member, the id and
    the time; provider's pass is listed; the report page escapes the evidence."""
    history = ConformanceHistory.open(f"sqlite:///{tmp_path / 'node.sqlite'}")
    _record(history, "agency", GOOD, 0)
    broken = _record(history, "agency", BROKEN, 1)
    _record(history, "provider", GOOD, 2)
    client = _client(store, history)
    page = client.get("/console/conformance")
    assert page.status_code == 200
    alert = page.text.split('role="alert"', 1)[1].split("</div>", 1)[0]
    assert "agency" in alert and "SM-RECV-2" in alert and "2026-11-29 13:00:00" in alert
    assert "provider" not in alert and "<caption>Latest result per member</caption>" in page.text
    report = client.get(f"/console/conformance/{broken}")
    assert report.status_code == 200 and "&lt;b&gt;receipted&lt;/b&gt;" in report.text
    assert client.get("/console/conformance/nope").status_code == 404
    history.close()


def test_runs_page_by_member_newest_first(store: QueueStore, tmp_path: Path) -> None:
    """Three runs of agency at one per page: the first page has the newest and a next link;
    the member filter leaves the others out."""
    history = ConformanceHistory.open(f"sqlite:///{tmp_path / 'node.sqlite'}")
    ids = [_record(history, "agency", GOOD, hour) for hour in range(3)]
    _record(history, "provider", GOOD, 5)
    client = _client(store, history)
    first = client.get("/console/conformance", params={"member": "agency", "limit": 1})
    runs = first.text.split("newest first</caption>", 1)[1]
    assert ids[2] in runs and ids[1] not in runs and "provider" not in runs
    assert 'rel="next"' in runs and "offset=1" in runs
    second = client.get("/console/conformance", params={"member": "agency", "limit": 1,
                                                        "offset": 1})  # fmt: skip
    assert ids[1] in second.text.split("newest first</caption>", 1)[1]
    assert 'rel="prev"' in second.text
    history.close()
