"""The chain: canonical records, linked in order, verified, and broken by any edit."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import rfc8785
from sqlalchemy import Engine, delete, select, update

from securemail.records.chain import GENESIS, NewRecord, RecordClass, encode, record
from securemail.records.schema import head, log, subjects
from securemail.records.verify import CheckpointTrust, verify
from securemail.storage.engine import transaction
from tests.queue.statements import statements
from tests.records.conftest import T0, some_records


def _verdict(engine: Engine):  # type: ignore[no-untyped-def]
    with transaction(engine, "verify", write=False) as conn:
        return verify(conn, CheckpointTrust())


def _rows(engine: Engine) -> list:  # type: ignore[type-arg]
    with transaction(engine, "read", write=False) as conn:
        return list(conn.execute(select(log).order_by(log.c.seq)))


def test_record_is_rfc8785_and_links_to_the_one_before(engine: Engine) -> None:
    """Each record is canonical JSON whose prev is the SHA-256 of the record before."""
    some_records(engine, 3)
    rows = _rows(engine)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev == hashlib.sha256(before.record.encode()).hexdigest() == before.digest
    value = json.loads(rows[1].record)
    assert rfc8785.dumps(value) == rows[1].record.encode()
    assert value["subjects"] == ["clerk@agency.govt.nz", "wiremu@msp.nz"]
    assert _verdict(engine).ok and _verdict(engine).records == 3


def test_encoding_escapes_what_could_forge_a_record() -> None:
    """A detail holding quotes or a line end stays inside its string."""
    new = NewRecord(T0, RecordClass.SECURITY, "x", details={"k": '"},"seq":9\n'})
    value = json.loads(encode(new, 1, GENESIS))
    assert value["seq"] == 1 and value["details"]["k"] == '"},"seq":9\n'


# Strings where a JSON writer could differ from RFC 8785: every control character, quotes
# and backslashes, DEL, line and paragraph separators, non-ASCII in and above the BMP.
_AWKWARD = "".join(map(chr, range(32))) + '"\\/\x7f\u2028\u2029é\ufeff\U0001f600'


def _as_rfc8785(new: NewRecord, seq: int, prev: str) -> bytes:
    """The record as the reference RFC 8785 implementation writes it."""
    value: dict[str, Any] = {
        "v": 1,
        "seq": seq,
        "time": new.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "class": new.record_class.value,
        "event": new.event[:64],
        "message_id": new.message_id,
        "subjects": sorted({s.lower() for s in new.subjects}),
        "details": dict(new.details),
        "prev": prev,
    }
    return rfc8785.dumps(value)


def test_encoding_is_the_reference_rfc8785_bytes() -> None:
    """Awkward strings, non-ASCII names and a long event encode byte for byte as RFC 8785."""
    names = {"ascii": _AWKWARD, "é": "1", "\ufb01": "2", "\U0001f600": "3", "z": ""}
    news = [
        NewRecord(T0, RecordClass.MESSAGE, "e" * 80, (_AWKWARD, "b@x.nz"), _AWKWARD, names),
        NewRecord(T0, RecordClass.SECURITY, "login", (), None, {}),
    ]
    for new, seq in itertools.product(news, (1, 12345678901)):
        assert encode(new, seq, "a" * 64) == _as_rfc8785(new, seq, "a" * 64)


def _edit_byte(engine: Engine, seq: int) -> None:
    with transaction(engine, "tamper", write=True) as conn:
        text = conn.execute(select(log.c.record).where(log.c.seq == seq)).scalar_one()
        changed = text.replace("wiremu", "wiremv")
        conn.execute(update(log).where(log.c.seq == seq).values(record=changed))


def test_one_changed_byte_names_the_record(engine: Engine) -> None:
    """Changing one byte of record 4 fails verify naming record 4."""
    some_records(engine, 6)
    _edit_byte(engine, 4)
    verdict = _verdict(engine)
    assert not verdict.ok and verdict.bad_record == 4, verdict
    assert "record 4" in (verdict.problem or "")


def test_recomputed_digest_is_caught_at_the_next_record(engine: Engine) -> None:
    """An edit whose digest column was recomputed breaks the next record's link."""
    some_records(engine, 6)
    _edit_byte(engine, 4)
    with transaction(engine, "tamper", write=True) as conn:
        text = conn.execute(select(log.c.record).where(log.c.seq == 4)).scalar_one()
        new = hashlib.sha256(text.encode()).hexdigest()
        conn.execute(update(log).where(log.c.seq == 4).values(digest=new))
    verdict = _verdict(engine)
    assert verdict.bad_record == 5 and "record 4 was altered" in (verdict.problem or "")


def test_a_deleted_record_is_named(engine: Engine) -> None:
    """Deleting record 3 fails verify naming record 3 as missing."""
    some_records(engine, 5)
    with transaction(engine, "tamper", write=True) as conn:
        conn.execute(delete(log).where(log.c.seq == 3))
    verdict = _verdict(engine)
    assert verdict.bad_record == 3 and "missing" in (verdict.problem or "")


def test_two_swapped_records_are_named(engine: Engine) -> None:
    """Swapping records 2 and 5 (all their columns) fails verify naming record 2."""
    some_records(engine, 6)
    with transaction(engine, "tamper", write=True) as conn:
        rows = {r.seq: r._mapping for r in conn.execute(select(log))}
        for seq, other in ((2, 5), (5, 2)):
            values = {k: v for k, v in rows[other].items() if k != "seq"}
            conn.execute(update(log).where(log.c.seq == seq).values(values))
    verdict = _verdict(engine)
    assert verdict.bad_record == 2, verdict


def test_records_cut_from_the_end_are_caught_by_the_head(engine: Engine) -> None:
    """Deleting the last two records fails verify: the head names record 5."""
    some_records(engine, 5)
    with transaction(engine, "tamper", write=True) as conn:
        conn.execute(delete(log).where(log.c.seq > 3))
    verdict = _verdict(engine)
    assert verdict.bad_record == 4 and "end" in (verdict.problem or "")


def test_head_row_moves_with_every_append(engine: Engine) -> None:
    """The head row is the last record's number and digest."""
    some_records(engine, 2)
    with transaction(engine, "read", write=False) as conn:
        row = conn.execute(select(head)).one()
    assert (row.seq, row.digest) == (2, _rows(engine)[-1].digest)


def test_empty_log_verifies(engine: Engine) -> None:
    """A node that recorded nothing yet verifies with zero records."""
    verdict = _verdict(engine)
    assert verdict.ok and verdict.records == 0


def test_an_append_is_one_statement_after_the_heads_lock(engine: Engine) -> None:
    """On PostgreSQL an append writes its records, their subjects and the head's move in
    one statement after locking the head (SQLite: one each); the chain verifies either
    way, and a record without subjects is kept beside ones with them."""
    news = [
        NewRecord(T0, RecordClass.MESSAGE, "queue.accepted", ("Aroha@msp.nz", "b@agency.nz")),
        NewRecord(T0, RecordClass.SECURITY, "login.failed", details={"why": "no"}),
    ]
    with statements() as seen:
        record(engine, *news)
    expected = 2 if engine.dialect.name == "postgresql" else 4
    assert len(seen) == expected
    with transaction(engine, "read", write=False) as conn:
        about = sorted(tuple(r) for r in conn.execute(select(subjects.c.seq, subjects.c.address)))
        moved = conn.execute(select(head.c.seq)).scalar_one()
    assert about == [(1, "aroha@msp.nz"), (1, "b@agency.nz")] and moved == 2
    assert [r.event for r in _rows(engine)] == ["queue.accepted", "login.failed"]
    assert _verdict(engine).ok and _verdict(engine).records == 2
