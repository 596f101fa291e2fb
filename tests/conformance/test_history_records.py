"""Each conformance run kept in the history is also a record in the records log: its
outcome and requirement ids, never the report's evidence."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from securemail.conformance.history import ConformanceHistory
from securemail.records.schema import log
from securemail.storage.engine import transaction
from tests.conformance.test_history import BROKEN, GOOD, _report, history
from tests.conftest import NOW
from tests.queue.conftest import pg_schema

__all__ = ["history", "pg_schema"]


def _records(history: ConformanceHistory) -> list[dict[str, object]]:
    query = select(log.c.record).where(log.c.event.like("conformance.%")).order_by(log.c.seq)
    with transaction(history.engine, "test", write=False) as conn:
        return [json.loads(t) for t in conn.execute(query).scalars()]


def test_each_run_is_one_record_with_its_outcome_and_no_evidence(
    history: ConformanceHistory,
) -> None:
    """A pass then a regressed failure give conformance.passed and conformance.failed,
    with the run id, member, gateway and requirement ids, at the run's finish time."""
    first = history.record(_report("agency", GOOD, 0), b"sig")
    second = history.record(_report("agency", BROKEN, 1), b"sig")
    found = _records(history)
    assert [r["event"] for r in found] == ["conformance.passed", "conformance.failed"]
    assert found[0]["details"] == {
        "id": first.id, "member": "agency", "target": "127.0.0.1:25",
        "tester": "conformance", "failed": "", "regressed": ""}  # fmt: skip
    details = found[1]["details"]
    assert isinstance(details, dict)
    assert details["id"] == second.id
    assert details["failed"] == details["regressed"] == "SM-RECV-2"
    assert found[1]["time"] == f"{NOW + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}.000000Z"
    assert all(r["class"] == "security" for r in found)
    assert "receipted" not in json.dumps(found)  # the finding's evidence stays in the report
