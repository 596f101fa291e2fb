"""The node's conformance history: every run's result and signed report, and regressions.

A run is recorded with the requirements it failed and those that **regressed**: failed now,
passed in the same member's previous run. The console, ``securemail conformance history``
and the scheduled role read it; the scheduled role alerts on a regression. Each run is
also a record in the records log (``conformance.passed`` / ``conformance.failed``, class
security), appended in the same transaction as its row: the member, the gateway, the
requirement ids and the run id, never the report's evidence.

Security: the rows hold what a run concluded and the report as signed; member ids and
requirement ids come from the verified directory and the kit, and are bound parameters.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, RowMapping, func, insert, select

from securemail.conformance.schema import conformance_results as results
from securemail.records.chain import NewRecord, RecordClass, append
from securemail.storage.engine import connect, transaction, upgrade


@dataclass(frozen=True)
class Result:
    """One recorded run (without its report bytes unless asked)."""

    id: str
    member: str
    target: str
    tester: str
    started: datetime
    finished: datetime
    passed: bool
    failed: tuple[str, ...]
    regressed: tuple[str, ...]


def _result(row: RowMapping) -> Result:
    return Result(
        row["id"], row["member"], row["target"], row["tester"], row["started"],
        row["finished"], row["result"] == "pass", tuple(row["failed"].split()),
        tuple(row["regressed"].split()),
    )  # fmt: skip


def _outcome(document: bytes) -> tuple[dict[str, object], set[str], set[str]]:
    value = json.loads(document)
    requirements = value["requirements"]
    failed = {r["id"] for r in requirements if r["result"] != "pass"}
    passed = {r["id"] for r in requirements if r["result"] == "pass"}
    return value, failed, passed


class ConformanceHistory:
    """The history on the node's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str) -> ConformanceHistory:
        """Connect to ``url`` and migrate it to the newest schema (close() when done)."""
        engine = connect(url)
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        """The database it reads and writes (the node's own)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def record(self, document: bytes, signature: bytes) -> Result:
        """Keep one run's signed report; the result, with what regressed since the last."""
        value, failed, _ = _outcome(document)
        member = str(value["member"])
        with transaction(self._engine, "conformance record", write=True) as connection:
            before = connection.execute(
                select(results.c.report).where(results.c.member == member)
                .order_by(results.c.finished.desc(), results.c.id).limit(1)
            ).scalar()  # fmt: skip
            passed_before = set() if before is None else _outcome(before)[2]
            row = {
                "id": secrets.token_hex(16), "member": member, "target": str(value["target"]),
                "tester": str(value["tester"]), "started": _time(value["started"]),
                "finished": _time(value["finished"]), "result": str(value["result"]),
                "failed": " ".join(sorted(failed)),
                "regressed": " ".join(sorted(failed & passed_before)),
                "report": document, "signature": signature,
            }  # fmt: skip
            connection.execute(insert(results).values(**row))
            append(connection, [_news(row, _time(value["finished"]))])
        return _result(row)  # type: ignore[arg-type]

    def latest(self) -> list[Result]:
        """Each member's most recent run, by member id."""
        newest = (
            select(results.c.member, func.max(results.c.finished).label("finished"))
            .group_by(results.c.member).subquery()
        )  # fmt: skip
        query = (
            select(*_COLUMNS).join(newest, (results.c.member == newest.c.member)
                                   & (results.c.finished == newest.c.finished))
            .order_by(results.c.member, results.c.id)
        )  # fmt: skip
        with transaction(self._engine, "conformance latest", write=False) as connection:
            rows = connection.execute(query).mappings().all()
        seen: dict[str, Result] = {}
        for row in rows:
            seen.setdefault(row["member"], _result(row))
        return list(seen.values())

    def runs(self, member: str | None = None, *, limit: int = 50, offset: int = 0) -> list[Result]:
        """Runs newest first, of one member or all."""
        query = select(*_COLUMNS).order_by(results.c.finished.desc(), results.c.id)
        if member is not None:
            query = query.where(results.c.member == member)
        with transaction(self._engine, "conformance runs", write=False) as connection:
            rows = connection.execute(query.limit(limit).offset(offset)).mappings().all()
        return [_result(row) for row in rows]

    def report(self, result_id: str) -> tuple[bytes, bytes] | None:
        """The signed report of one run: (canonical JSON, detached signature)."""
        query = select(results.c.report, results.c.signature).where(results.c.id == result_id)
        with transaction(self._engine, "conformance report", write=False) as connection:
            row = connection.execute(query).first()
        return None if row is None else (bytes(row[0]), bytes(row[1]))


def _news(row: dict[str, object], finished: datetime) -> NewRecord:
    """The run as a record: what it concluded, not its evidence."""
    keys = ("id", "member", "target", "tester", "failed", "regressed")
    details = {k: str(row[k]) for k in keys}
    event = "conformance.passed" if row["result"] == "pass" else "conformance.failed"
    return NewRecord(finished, RecordClass.SECURITY, event, details=details)


_COLUMNS = [c for c in results.c if c.name not in ("report", "signature")]


def _time(text: object) -> datetime:
    return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z")
