"""Operators' and API clients' looks at what the node holds, as records (class security).

Steering a queue entry (hold, release, retry, delete) is a queue event and reaches the
log with the queue's history; *reading* one is not, so the console, the API and the CLI
call :func:`opened` when an operator opens an entry's metadata or a quarantined entry,
and the records exports record themselves the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Engine

from securemail.queue.model import Entry, State
from securemail.records.chain import NewRecord, RecordClass, record


def opened(engine: Engine, entry: Entry, *, by: str, via: str, now: datetime) -> None:
    """Record that ``by`` opened ``entry`` through ``via`` (console, api, cli)."""
    what = "quarantined" if entry.state is State.QUARANTINED else "metadata"
    details = {"queue_id": entry.id, "state": entry.state.value, "by": by, "via": via}
    subjects = (entry.mail_from, *(r.address for r in entry.recipients))
    news = NewRecord(
        now, RecordClass.SECURITY, f"operator.opened-{what}", subjects, entry.message_id, details
    )
    record(engine, news)


def acted(
    engine: Engine, event: str, *, by: str, now: datetime, details: Mapping[str, str]
) -> None:
    """Record an operator action of the records themselves (``records.export``, …)."""
    record(engine, NewRecord(now, RecordClass.SECURITY, event, details={"by": by, **details}))
