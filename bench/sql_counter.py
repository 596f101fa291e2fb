"""Counts a process's database work: transactions, commits and statements, by kind.

Loaded into each node by ``bench/sqlcount/sitecustomize.py`` when
``SECUREMAIL_SQL_COUNT`` names a directory (``gateway_bench.py --count-sql``). SQLAlchemy's
engine events see every transaction and commit and every statement, including those the
queue runs on the driver's cursor (:mod:`securemail.storage.prepared` fires the same
``before_cursor_execute`` event when a listener is there). A thread writes the totals
so far to ``<directory>/<pid>.json`` every quarter second; the benchmark reads them when
it reads the nodes' CPU time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

_LOCK = threading.Lock()
_COUNTS: Counter[str] = Counter()
PERIOD = 0.25  # seconds between two writes of the totals


def _add(*keys: str, rows: int = 1) -> None:
    with _LOCK:
        for key in keys:
            _COUNTS[key] += 1
        if rows > 1:
            _COUNTS["executemany rows"] += rows


def _begin(conn: Any) -> None:
    _add("transactions")


def _commit(conn: Any) -> None:
    _add("commits")


def _statement(  # noqa: PLR0917 - SQLAlchemy's event signature
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    if verb == "BEGIN":  # SQLite's BEGIN [IMMEDIATE], issued by the transaction's begin
        return
    rows = len(parameters) if many else 1
    _add("statements", f"statements {verb}", *_claims(verb, statement), rows=rows)


def _claims(verb: str, statement: str) -> tuple[str, ...]:
    """A worker's claim (securemail.queue.claims): its look for due entries (ordered by
    priority; on PostgreSQL a worker's whole claim), and on SQLite its move of what it
    found to ACTIVE (only when it found any): there, the difference is the claims that
    found nothing."""
    if "ORDER BY messages.priority" in statement:
        return ("statements claim (look)",)
    if verb == "UPDATE" and "claimed_by=" in statement and "state=" in statement:
        return ("statements claim (took entries)",)
    return ()


def totals(directory: Path, pid: int) -> Counter[str]:
    """The totals process ``pid`` last wrote (empty if none yet)."""
    try:
        return Counter(json.loads((directory / f"{pid}.json").read_text()))
    except (OSError, ValueError):
        return Counter()


def _write_forever(directory: Path) -> None:
    target = directory / f"{os.getpid()}.json"
    spare = directory / f".{os.getpid()}.json"
    while True:
        with _LOCK:
            text = json.dumps(dict(_COUNTS))
        spare.write_text(text)
        os.replace(spare, target)
        time.sleep(PERIOD)


def install(directory: Path | None = None) -> None:
    """Count this process's database work (into ``directory``, if given)."""
    event.listen(Engine, "begin", _begin)
    event.listen(Engine, "commit", _commit)
    event.listen(Engine, "before_cursor_execute", _statement)
    if directory is not None:
        threading.Thread(target=_write_forever, args=(directory,), daemon=True).start()


def counted() -> Counter[str]:
    """The totals so far, in this process."""
    with _LOCK:
        return Counter(_COUNTS)
