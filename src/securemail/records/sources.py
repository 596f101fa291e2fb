"""The node's hash-chained audit files, brought into the operations log.

Key custody (``audit.log``, written by ``securemail keys``) and account events
(``accounts.log``) stay files written by :mod:`securemail.audit`: key custody happens with
the node stopped, often before its database exists or on the machine a backup is restored
to, and the custody record keeps the file's head. :func:`bring_in` copies each line not
yet copied into the log as one record (its event, details and time, plus the file's name,
the line's number and digest), after checking the file's own chain and that the lines
copied before are still the same. The node calls it before each checkpoint and at its
stop, so every account and custody event is in the signed chain within one interval.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select, update

from securemail import audit
from securemail.records.chain import NewRecord, RecordClass, append
from securemail.records.errors import RecordsError, RecordsReason
from securemail.records.schema import sources

AUDIT_FILES = ("audit.log", "accounts.log")  # below the node's data_dir / key folders


def bring_in(conn: Connection, name: str, path: Path) -> int:
    """Copy the new lines of the audit file at ``path`` (known as ``name``); how many.

    Inside a write transaction. RecordsError SOURCE_BROKEN if the file's chain does not
    hold or a line copied before was changed.
    """
    if not path.is_file():
        return 0
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    check = audit.verify_lines(lines)
    if not check.ok:
        raise RecordsError(RecordsReason.SOURCE_BROKEN, f"{name}: {check.problem}")
    row = conn.execute(select(sources).where(sources.c.name == name).with_for_update()).first()
    done = 0 if row is None else int(row.records)
    copied = "" if row is None else str(row.digest)
    if done > len(lines) or (done and audit.digest(lines[done - 1]) != copied):
        detail = f"{name}: line {done} is not the line copied into the log"
        raise RecordsError(RecordsReason.SOURCE_BROKEN, detail)
    news = [_record(name, n, line) for n, line in enumerate(lines[done:], start=done + 1)]
    if not news:
        return 0
    append(conn, news)
    values = {"records": len(lines), "digest": audit.digest(lines[-1])}
    if row is None:
        conn.execute(sources.insert().values(name=name, **values))
    else:
        conn.execute(update(sources).where(sources.c.name == name).values(values))
    return len(news)


def _record(name: str, number: int, line: bytes) -> NewRecord:
    value = json.loads(line)
    event, details = str(value["event"]), dict(value["details"])
    subjects = tuple(v for v in details.values() if "@" in v)
    kind = RecordClass.ACCOUNT if event.startswith("account.") else RecordClass.SECURITY
    source = {"source": name, "source_line": str(number), "source_digest": audit.digest(line)}
    return NewRecord(
        time=datetime.fromisoformat(str(value["time"])),
        record_class=kind,
        event=event,
        subjects=subjects,
        details=details | source,
    )
