"""The node's conformance history on both engines: runs kept with their signed report, the
latest per member, and a regression named when a requirement that passed fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from securemail.conformance.history import ConformanceHistory
from securemail.conformance.report import Finding, report_document
from tests.conftest import NOW
from tests.queue.conftest import pg_schema, pg_url  # noqa: F401 (the fixture)

GOOD = [Finding("SM-RECV-2", "tampered", True, "kept"), Finding("SM-TLS-3", "door", True, "530")]
BROKEN = [Finding("SM-RECV-2", "tampered", False, "receipted"), GOOD[1]]


@pytest.fixture(params=["sqlite", "postgresql"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConformanceHistory]:
    """An empty history on each engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'node.sqlite'}"
    else:
        url = pg_url(request.getfixturevalue("pg_schema"))
    opened = ConformanceHistory.open(url)
    yield opened
    opened.close()


def _report(member: str, findings: list[Finding], hours: int) -> bytes:
    at = NOW + timedelta(hours=hours)
    return report_document(tester="conformance", member=member, target="127.0.0.1:25",
                           started=at, finished=at, findings=findings, cases=[])  # fmt: skip


def test_a_requirement_that_passed_and_now_fails_is_a_regression(
    history: ConformanceHistory,
) -> None:
    """The second run of a member fails SM-RECV-2, which passed before: a regression; a
    third, still failing, is a failure but no new regression."""
    assert history.record(_report("agency", GOOD, 0), b"sig").regressed == ()
    second = history.record(_report("agency", BROKEN, 1), b"sig")
    assert not second.passed and second.failed == ("SM-RECV-2",)
    assert second.regressed == ("SM-RECV-2",)
    assert history.record(_report("agency", BROKEN, 2), b"sig").regressed == ()


def test_latest_is_one_run_per_member_and_runs_page_newest_first(
    history: ConformanceHistory,
) -> None:
    """latest() has each member's newest run; runs() pages newest first, per member too;
    the signed report comes back byte for byte."""
    first = _report("agency", GOOD, 0)
    kept = history.record(first, b"signature")
    history.record(_report("agency", BROKEN, 1), b"s")
    history.record(_report("provider", GOOD, 2), b"s")
    latest = {r.member: r for r in history.latest()}
    assert set(latest) == {"agency", "provider"}
    assert not latest["agency"].passed and latest["provider"].passed
    assert [r.member for r in history.runs()] == ["provider", "agency", "agency"]
    assert [r.id for r in history.runs("agency", limit=1, offset=1)] == [kept.id]
    assert history.report(kept.id) == (first, b"signature")
    assert history.report("no-such-run") is None
