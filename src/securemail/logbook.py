"""The operations log: one line per queue entry per event, as logfmt text or JSON lines.

Theory of operation. The queue writes every event of an entry (accepted, protected, relayed,
verified, delivered, deferred, bounced, quarantined, receipted, expired, …) to its history
table; the same transaction hands the events to :func:`queue_events`, which writes one log
line each once the transaction has committed, so the log and ``securemail queue show``
never disagree. Every other message of the node (``logging.getLogger(...)``) goes through
the same formatter, so one file holds one format.

A queue line carries, in this order, the keys of :data:`QUEUE_KEYS`; absent values are left
out. Text form (logfmt: ``key=value``, values with spaces or quotes in double quotes)::

    2026-12-07T16:30:01.123456Z info securemail.queue queue_id=0193… event=delivered
    message_id=<1@agency.govt.nz> from=a@agency.govt.nz to=b@msp.nz relay=127.0.0.1:2525
    reply="250 2.0.0 Accepted" delay=0.412

JSON form: one object per line with the same keys plus ``time``, ``level`` and ``logger``.
Under systemd (``JOURNAL_STREAM`` names our stderr) the time is left out, since journald
adds its own, and each line starts with its syslog priority (``<6>``), which journald reads.

Security: a log line never holds a message body or a header other than Message-ID; the
values are the envelope, replies and reason codes the queue history already keeps.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["text", "json"]
QUEUE_LOGGER = "securemail.queue"
FOLLOW_UP = "queued-follow-up"  # its detail lists the queue ids of what an entry caused
# Events whose detail is message header text, kept in the queue for the notices it allows
# (securemail.bounces): the log and the records say only that it is kept, never the fields.
HEADER_DETAIL = frozenset({"sender-vouched"})


def shown_detail(event: str, detail: str, *, headers: bool = False) -> str:
    """An event's detail as a log line or a listing shows it. Header text is shown only
    when ``headers`` (an operator's own listing of the queue), on one line; elsewhere the
    line says it is kept. Other details are as recorded (the log escapes what it must)."""
    if event not in HEADER_DETAIL or not detail:
        return detail
    if not headers:
        return "header fields kept in the queue for notices"
    return " | ".join(line.strip() for line in detail.splitlines() if line.strip())


QUEUE_KEYS = (
    "queue_id",
    "event",
    "direction",
    "message_id",
    "from",
    "to",
    "client",
    "relay",
    "reason",
    "reply",
    "delay",
    "detail",
)
_LEAD_KEYS = ("time", "level", "logger")
_HANDLER = "securemail.logbook"
_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}

log = logging.getLogger(QUEUE_LOGGER)


@dataclass(frozen=True)
class QueueLine:
    """One queue event as the log shows it (see the module docstring for the keys)."""

    queue_id: str
    event: str
    time: datetime
    direction: str = ""
    message_id: str = ""
    sender: str = ""
    recipient: str = ""
    client: str = ""
    relay: str = ""
    reason: str = ""
    reply: str = ""
    created_at: datetime | None = None
    detail: str = ""

    def fields(self) -> dict[str, str | float]:
        """The line's key=value pairs, absent values left out, in :data:`QUEUE_KEYS` order;
        ``delay`` is the seconds since the entry was accepted."""
        delay = None if self.created_at is None else round(_seconds(self.time, self.created_at), 3)
        values: dict[str, str | float | None] = {
            "queue_id": self.queue_id,
            "event": self.event,
            "direction": self.direction,
            "message_id": self.message_id,
            "from": self.sender,
            "to": self.recipient,
            "client": self.client,
            "relay": self.relay,
            "reason": self.reason,
            "reply": self.reply,
            "delay": delay,
            "detail": shown_detail(self.event, self.detail),
        }
        return {key: value for key, value in values.items() if value is not None and value != ""}


def wanted() -> bool:
    """Whether queue lines are written at all (the CLI's commands leave logging off)."""
    return log.isEnabledFor(logging.INFO)


def queue_events(lines: Iterable[QueueLine]) -> None:
    """Write one log line per queue event (called after the events' transaction committed)."""
    for line in lines:
        log.info(line.event, extra={"queue": line.fields()})


def configure(
    form: LogFormat,
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``form``; returns the handler.

    Queue lines are INFO: they are written at the default level, and ``WARNING`` or above
    leaves them out (nothing is then collected for them either).
    """
    stream = stream or sys.stderr
    journald = under_journald(stream, os.environ if environ is None else environ)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(form, journald))
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.getLevelNamesMapping()[str(level).upper()])
    return handler


def level() -> str:
    """The level :func:`configure` set for the node's messages ("INFO" if not configured),
    for the worker processes the node starts."""
    root = logging.getLogger()
    if any(handler.get_name() == _HANDLER for handler in root.handlers):
        return logging.getLevelName(root.level)
    return "INFO"


def under_journald(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal stream systemd gave us (``JOURNAL_STREAM`` is
    ``device:inode`` of that stream; a child whose stderr was redirected does not match)."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{status.st_dev}:{status.st_ino}"


def _formatter(form: LogFormat, journald: bool) -> logging.Formatter:
    pre: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _queue_fields,
    ]
    if not journald:
        pre.insert(0, structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"))
    renderer: Any
    if form == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        pre.append(_lead_first)
    else:
        renderer = _text_renderer(journald)
    processors: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    processors.append(_journald_priority(renderer) if journald else renderer)
    return structlog.stdlib.ProcessorFormatter(
        processors=processors, foreign_pre_chain=pre, pass_foreign_args=False
    )


def _queue_fields(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Queue lines: their fields replace the message; others keep theirs as ``msg``."""
    record = event.get("_record")
    message = event.pop("event", "")
    fields = getattr(record, "queue", None)
    if fields is not None:
        event.update(fields)
    else:
        event["msg"] = message
        if record is not None and record.exc_info:
            event["exc_info"] = record.exc_info
            event = dict(structlog.processors.format_exc_info(logger, name, event))
    return event


def _lead_first(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    lead = {key: event.pop(key) for key in _LEAD_KEYS if key in event}
    return lead | event


def _text_renderer(journald: bool) -> Any:
    """logfmt after the time, level and logger as plain words (what Postfix readers expect)."""
    logfmt = structlog.processors.LogfmtRenderer(key_order=[*QUEUE_KEYS, "msg"], drop_missing=True)

    def render(logger: Any, name: str, event: dict[str, Any]) -> str:
        lead = [_one_line(str(event.pop(key))) for key in _LEAD_KEYS if key in event]
        values = {k: _one_line(v) if isinstance(v, str) else v for k, v in event.items()}
        return " ".join([*lead, logfmt(logger, name, values)])

    return render


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    """Control characters written as escapes (``\\r``, ``\\n``, ``\\x1b``): a value (a
    signed header field, a peer's reply) can never start a line of its own in the text log,
    nor hide one (THREATS.md J, log injection)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")

    return _CONTROL.sub(escape, value)


def _journald_priority(renderer: Any) -> Any:
    """Prefix each line with ``<N>``, its syslog priority, for journald (sd-daemon(3))."""

    def render(logger: Any, name: str, event: dict[str, Any]) -> str:
        priority = _PRIORITY.get(str(event.get("level", "info")), 6)
        return f"<{priority}>{renderer(logger, name, event)}"

    return render


def _seconds(later: datetime, earlier: datetime) -> float:
    return max((later - earlier).total_seconds(), 0.0)


def parse(line: str) -> dict[str, str]:
    """The key=value pairs of one log line in either form ({} for a line that has none)."""
    line = line.strip()
    if line.startswith("<") and ">" in line[:4]:
        line = line.split(">", 1)[1]  # a journald priority prefix
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    try:
        words = shlex.split(line)
    except ValueError:
        return {}
    return dict(word.split("=", 1) for word in words if "=" in word)


def follow(lines: Sequence[str], wanted: str) -> list[int]:
    """The indexes of ``lines`` about one message: those naming ``wanted`` as queue id or
    Message-ID, every line of the same Message-ID or queue ids (across nodes' logs), and
    of the notices and receipts its entries queued (``queued-follow-up``)."""
    parsed = [parse(line) for line in lines]
    queue_ids, message_ids = {wanted}, {wanted}
    size = 0
    while size != len(queue_ids) + len(message_ids):  # until no line adds an id
        size = len(queue_ids) + len(message_ids)
        for fields in parsed:
            if fields.get("queue_id") in queue_ids or fields.get("message_id") in message_ids:
                queue_ids.add(fields.get("queue_id", wanted))
                message_ids.add(fields.get("message_id", wanted))
                if fields.get("event") == FOLLOW_UP:  # the notices and receipts it caused
                    queue_ids.update(fields.get("detail", "").split(", "))
    return [
        i
        for i, fields in enumerate(parsed)
        if fields.get("queue_id") in queue_ids or fields.get("message_id") in message_ids
    ]
