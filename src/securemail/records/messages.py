"""The queue's events as operations-log records (class message, evidence or quarantine).

:mod:`securemail.queue.eventlog` describes each event of a write transaction (Message-ID,
envelope, client, relay, reply) just before the commit; :func:`queue_records` turns those
descriptions into records, appended in the same transaction, so the log holds exactly the
queue's history: a rolled-back transaction leaves no record, a committed one its records.

Security: the description is the envelope and the peers' replies; no body, no header but
Message-ID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from securemail.logbook import QueueLine
from securemail.records.chain import NewRecord, RecordClass

_EVIDENCE = ("receipt", "receipted", "mdn")


def record_class(event: str) -> RecordClass:
    """The class of a queue event: quarantine, receipt evidence, or message metadata."""
    if event.startswith("quarantine"):
        return RecordClass.QUARANTINE
    if event.startswith(_EVIDENCE):
        return RecordClass.EVIDENCE
    return RecordClass.MESSAGE


def queue_records(
    lines: Sequence[QueueLine], recipients: Mapping[str, Sequence[str]]
) -> list[NewRecord]:
    """One record per event; an event without a recipient is about all of the entry's."""
    news = []
    for line in lines:
        fields = line.fields()
        about = [line.recipient] if line.recipient else list(recipients.get(line.queue_id, ()))
        details = {
            k: str(v) for k, v in fields.items() if k not in ("event", "message_id", "from", "to")
        }
        if line.sender:
            details["from"] = line.sender
        if line.recipient:
            details["to"] = line.recipient
        news.append(
            NewRecord(
                time=line.time,
                record_class=record_class(line.event),
                event=f"queue.{line.event}",
                subjects=(line.sender, *about),
                message_id=line.message_id or None,
                details=details,
            )
        )
    return news
