"""The audit log: append-only JSON lines, each holding the SHA-256 of the line before it.

Theory of operation. Every record is one line of canonical JSON with four members: ``time``
(UTC, ISO 8601), ``event`` (e.g. ``keys.backup``), ``details`` (strings only) and ``prev``,
the hex SHA-256 of the previous line as written, without its line end (64 zeros for the
first record). Changing, removing or reordering a line breaks the link of the line after
it, and a cut-off last line is not a record at all, so :func:`verify` names the first line
where the chain does not hold. Removing whole records from the *end* leaves a shorter chain
that is still valid: only a :class:`Head` kept elsewhere (what :func:`append` returns, e.g.
written into the custody record) shows that, and :func:`verify` checks one when given.

Security: records must hold no secrets: callers pass identifiers, names and counts, never
keys, passphrases, share words or message content. Values are JSON-escaped (CR, LF and all
non-ASCII become escapes), so a value cannot end its line and forge a record after it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

GENESIS = "0" * 64
FIELDS = ("time", "event", "details", "prev")
_EVENT = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*")
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Head:
    """Where the log stood after an append: record ``records`` hashed to ``digest``."""

    records: int
    digest: str


@dataclass(frozen=True)
class Check:
    """The verdict on a log: records that hold, and the first line that does not (1-based)."""

    records: int
    broken_line: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_line is None


def digest(line: bytes) -> str:
    """The link to ``line``: hex SHA-256 of the line without its line end."""
    return hashlib.sha256(line).hexdigest()


def encode_record(time: str, event: str, details: Mapping[str, str], prev: str) -> bytes:
    """One record in its canonical form: fixed member order, sorted details, ASCII only."""
    record = {"time": time, "event": event, "details": dict(sorted(details.items())), "prev": prev}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _check_record(event: str, details: Mapping[str, str], now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    if not _EVENT.fullmatch(event):
        raise ValueError(f"audit event name {event!r} is not dotted lower-case words")
    for key, value in details.items():
        if not _DETAIL_KEY.fullmatch(key) or not isinstance(value, str):
            raise ValueError(f"audit detail {key!r} must be a lower-case name with a str value")


def record_line(event: str, details: Mapping[str, str], *, now: datetime, prev: str) -> bytes:
    """A new record for ``event`` at ``now`` (timezone-aware), linked to ``prev``."""
    _check_record(event, details, now)
    time = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return encode_record(time, event, details, prev)


def append(path: Path, event: str, details: Mapping[str, str], *, now: datetime) -> Head:
    """Append one record to the log at ``path`` (created 0600 if missing); return the head.

    An exclusive lock keeps concurrent writers from forking the chain. A last line cut off
    by a crash is left as it is (it stays visible to :func:`verify`); the new record starts
    on a line of its own and links to it.
    """
    _check_record(event, details, now)  # before the log is created or locked
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "r+b") as log:
        fcntl.flock(log.fileno(), fcntl.LOCK_EX)
        existing = log.read()
        lines = existing.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        prev = digest(lines[-1]) if lines else GENESIS
        line = record_line(event, details, now=now, prev=prev)
        separator = b"\n" if existing and not existing.endswith(b"\n") else b""
        log.write(separator + line + b"\n")
        log.flush()
        os.fsync(log.fileno())
    return Head(len(lines) + 1, digest(line))


def _parse(line: bytes) -> tuple[str, str, dict[str, str], str] | None:
    """The four fields of a record line, or None if it is not a well-formed record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or tuple(record) != FIELDS:
        return None
    time, event, details, prev = (record[name] for name in FIELDS)
    if not (isinstance(time, str) and isinstance(event, str) and isinstance(prev, str)):
        return None
    if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
        return None
    return time, event, details, prev


def _check_line(number: int, line: bytes, expected_prev: str) -> str | None:
    """Why line ``number`` breaks the chain, or None if it holds."""
    fields = _parse(line)
    if fields is None:
        return f"line {number} is not an audit record"
    if encode_record(*fields) != line:
        return f"line {number} is not in canonical form (it was edited)"
    if fields[3] == expected_prev:
        return None
    if number == 1:
        return "line 1 does not start a log: records before it were removed"
    return (
        f"line {number} does not follow line {number - 1}: line {number - 1} was altered, "
        f"or records between them were removed or reordered"
    )


def _check_chain(lines: Sequence[bytes]) -> Check:
    prev = GENESIS
    for number, line in enumerate(lines, start=1):
        problem = _check_line(number, line, prev)
        if problem is not None:
            return Check(number - 1, number, problem)
        prev = digest(line)
    return Check(len(lines))


def _check_head(lines: Sequence[bytes], head: Head) -> Check:
    count = len(lines)
    if head.records > count:
        problem = f"the log ends after {count} records but held {head.records}"
        return Check(count, count + 1, problem + ": records were removed from its end")
    if head.records > 0 and digest(lines[head.records - 1]) != head.digest:
        problem = f"line {head.records} is not the record the head names: it was replaced"
        return Check(head.records - 1, head.records, problem)
    return Check(count)


def verify_lines(lines: Sequence[bytes], head: Head | None = None) -> Check:
    """Verify records given as lines without line ends; see :func:`verify`."""
    check = _check_chain(lines)
    if not check.ok or head is None:
        return check
    return _check_head(lines, head)


def verify(path: Path, head: Head | None = None) -> Check:
    """Verify the log at ``path``: every link, no cut-off last line, and ``head`` if given."""
    lines = path.read_bytes().split(b"\n")
    partial = lines.pop()  # empty when the log ends with a line end, as a complete log does
    check = _check_chain(lines)
    if check.ok and partial:
        number = len(lines) + 1
        return Check(len(lines), number, f"line {number} is cut off: the log was truncated")
    if not check.ok or head is None:
        return check
    return _check_head(lines, head)
