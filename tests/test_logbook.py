"""The operations log's two forms, its journald behaviour and reading it back."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from securemail import logbook

ACCEPTED = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
LINE = logbook.QueueLine(
    queue_id="0193abcdef0123aa11bb22cc",
    event="deferred",
    time=ACCEPTED + timedelta(seconds=61.5),
    direction="outbound",
    message_id="<1@agency.govt.nz>",
    sender="aroha@agency.govt.nz",
    recipient="hemi@provider.nz",
    client="mta.agency.govt.nz [10.0.0.5]",
    relay="gw.provider.nz:25",
    reason="tls-pin-mismatch",
    reply="451 4.7.5 TLS failed",
    created_at=ACCEPTED,
    detail='pin "abc" not listed',
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _write(tmp_path: Path, form: logbook.LogFormat, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / f"{form}.log"
    with path.open("w") as stream:
        logbook.configure(form, "INFO", stream=stream, environ=environ or {})
        logbook.queue_events([LINE])
        logging.getLogger("securemail.node").debug("not shown below INFO")
        logging.getLogger("securemail.node").warning("directory %s is stale", "serial 7")
        try:
            raise ValueError("a bad thing")
        except ValueError:
            logging.getLogger("securemail.web").exception("web failed")
    return path.read_text()


def test_text_lines_are_logfmt_in_a_stable_key_order(tmp_path: Path, restore_logging: None) -> None:
    """A queue line is time, level, logger then key=value pairs in the documented order; the
    node's own messages share the form; nothing below the level; a traceback stays on one
    line."""
    queue, warning, error = _write(tmp_path, "text").splitlines()
    assert logbook.level() == "INFO"  # what worker processes are started with
    assert queue.split(" ")[1:3] == ["info", "securemail.queue"]
    datetime.fromisoformat(queue.split(" ")[0])
    assert queue.split(" ", 3)[3] == (
        "queue_id=0193abcdef0123aa11bb22cc event=deferred direction=outbound "
        "message_id=<1@agency.govt.nz> from=aroha@agency.govt.nz to=hemi@provider.nz "
        'client="mta.agency.govt.nz [10.0.0.5]" relay=gw.provider.nz:25 '
        'reason=tls-pin-mismatch reply="451 4.7.5 TLS failed" delay=61.5 '
        'detail="pin \\"abc\\" not listed"'
    )
    assert warning.endswith('warning securemail.node msg="directory serial 7 is stale"')
    assert "ValueError: a bad thing" in error and error.startswith(queue[:4])
    assert logbook.parse(queue)["detail"] == 'pin "abc" not listed'


def test_at_warning_queue_lines_are_left_out(tmp_path: Path, restore_logging: None) -> None:
    """``--log-level WARNING`` leaves queue lines (INFO) out, and nothing collects them."""
    path = tmp_path / "quiet.log"
    with path.open("w") as stream:
        logbook.configure("text", "WARNING", stream=stream, environ={})
        assert not logbook.wanted() and logbook.level() == "WARNING"
        logbook.queue_events([LINE])
        logging.getLogger("securemail.node").warning("stale")
    assert path.read_text().splitlines()[0].endswith("warning securemail.node msg=stale")
    assert len(path.read_text().splitlines()) == 1


def test_json_lines_hold_the_same_keys(tmp_path: Path, restore_logging: None) -> None:
    """The JSON form is one object per line: time, level, logger, then the same keys."""
    first = json.loads(_write(tmp_path, "json").splitlines()[0])
    assert list(first)[:3] == ["time", "level", "logger"]
    assert {k: v for k, v in first.items() if k not in ("time", "level", "logger")} == (
        LINE.fields()
    )
    assert first["delay"] == 61.5


def test_under_journald_no_timestamp_and_a_priority_prefix(
    tmp_path: Path, restore_logging: None
) -> None:
    """When JOURNAL_STREAM names our stream, lines start with their syslog priority and carry
    no time (journald adds its own); a JOURNAL_STREAM naming another stream changes nothing."""
    path = tmp_path / "journal.log"
    path.touch()
    status = path.stat()
    with path.open("w") as stream:
        environ = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        logbook.configure("text", "INFO", stream=stream, environ=environ)
        logbook.queue_events([LINE])
        logging.getLogger("securemail.node").warning("stale")
    queue, warning = path.read_text().splitlines()
    assert queue.startswith("<6>info securemail.queue queue_id=")
    assert warning == "<4>warning securemail.node msg=stale"
    other = _write(tmp_path, "text", {"JOURNAL_STREAM": f"{status.st_dev}:1"})
    assert other[:4].isdigit()


def test_follow_finds_a_message_across_nodes_by_queue_id_or_message_id() -> None:
    """From one node's queue id, the lines of the other node's entry for the same Message-ID
    are found too, and unrelated lines are not."""
    lines = [
        "t info securemail.queue queue_id=a1 event=accepted message_id=<m@x>",
        '{"queue_id": "b2", "event": "accepted", "message_id": "<m@x>"}',
        "t info securemail.queue queue_id=c3 event=accepted message_id=<other@x>",
        "<6>info securemail.queue queue_id=b2 event=delivered message_id=<m@x>",
        "t info securemail.queue queue_id=a1 event=deleted",
        'garbage "unbalanced',
        'b info securemail.queue queue_id=b2 event=queued-follow-up detail="r9, n8"',
        "t info securemail.queue queue_id=r9 event=accepted message_id=<receipt@y>",
    ]
    assert logbook.follow(lines, "a1") == [0, 1, 3, 4, 6, 7]
    assert logbook.follow(lines, "<m@x>") == [0, 1, 3, 4, 6, 7]
    assert logbook.follow(lines, "zz") == []


def test_control_characters_never_break_a_text_line(tmp_path: Path, restore_logging: None) -> None:
    """A value holding CR, LF or an escape (a signed header field, a peer's reply) stays on
    its one line, written as escapes, and reads back with its queue id (log injection)."""
    injected = dataclasses.replace(
        LINE, detail="From: a@agency.govt.nz\r\nTo: b@x\r\n", reply="250 ok\r\nfake line\x1b[2J"
    )
    path = tmp_path / "text.log"
    with path.open("w", newline="") as stream:
        logbook.configure("text", "INFO", stream=stream, environ={})
        logbook.queue_events([injected])
    text = path.read_bytes().decode()
    assert text.count("\n") == 1 and "\r" not in text and "\x1b" not in text
    fields = logbook.parse(text)
    assert fields["queue_id"] == LINE.queue_id
    assert "\\r" in fields["detail"] and "\\x1b" in fields["reply"]


def test_vouched_header_fields_never_reach_the_log_or_the_records() -> None:
    """A ``sender-vouched`` event's detail (signed From:/To:/Date: fields, kept in the queue
    for notices) is written to the log and the records only as "kept"; an operator's own
    queue listing shows it on one line."""
    header = "From: aroha@agency.govt.nz\r\nTo: hemi@provider.nz\r\nDate: Mon, 7 Dec 2026\r\n"
    line = dataclasses.replace(LINE, event="sender-vouched", detail=header)
    assert line.fields()["detail"] == "header fields kept in the queue for notices"
    shown = logbook.shown_detail("sender-vouched", header, headers=True)
    assert shown == "From: aroha@agency.govt.nz | To: hemi@provider.nz | Date: Mon, 7 Dec 2026"
    assert logbook.shown_detail("deferred", "a\r\nb") == "a\r\nb"  # escaped by the log
