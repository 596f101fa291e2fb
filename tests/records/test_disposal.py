"""Disposal: what is due goes (evidence and quarantine included), held and recent stay,
a disposal record says what went, the log still verifies, nothing else disappears."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from securemail.queue import Direction, QueueStore
from securemail.queue.schema import events, signatures
from securemail.records import holds
from securemail.records.classes import RecordClass
from securemail.records.disposal import dispose
from securemail.records.errors import RecordsError
from securemail.records.retention import RecordsSettings
from securemail.records.schema import log
from securemail.records.verify import CheckpointTrust, verify
from securemail.replies import ok
from securemail.storage.engine import transaction
from tests.queue.conftest import NOW, RETRY, message
from tests.queue.test_receipts import BOB, EVIDENCE, RECEIPT, relayed

HELD = "held@ministry.govt.nz"
SHORT = RecordsSettings(
    keep={c: timedelta(days=1 if c is not RecordClass.SECURITY else 3650) for c in RecordClass},
    authority=dict.fromkeys(RecordClass, "GDA test class"),
)


@pytest.fixture
def store(url: str, engine: Engine) -> Iterator[QueueStore]:
    with QueueStore.open(url, retry=RETRY) as opened:
        yield opened


def _delivered(store: QueueStore, to: str, when: object = NOW) -> str:
    entry_id = store.enqueue(message(to), when)  # type: ignore[arg-type]
    store.claim(Direction.OUTBOUND, when)  # type: ignore[arg-type]
    store.record(entry_id, {to: ok()}, when)  # type: ignore[arg-type]
    return entry_id


def _log(engine: Engine) -> list[dict[str, object]]:
    with transaction(engine, "read", write=False) as conn:
        rows = conn.execute(select(log).order_by(log.c.seq)).all()
    return [dict(r._mapping) for r in rows]


def test_short_retention_destroys_what_is_due_and_keeps_the_held(
    store: QueueStore, engine: Engine
) -> None:
    """Old delivered, receipted and quarantined entries go with their log records; held and
    recent ones stay; each class leaves one disposal record; the log still verifies."""
    gone = [
        _delivered(store, "aroha@ministry.govt.nz"),
        _delivered(store, "wiremu@ministry.govt.nz"),
    ]
    kept = [_delivered(store, HELD)]
    receipted = relayed(store)
    store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW)
    quarantined = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.quarantine(quarantined, "integrity-failed", "tag mismatch", NOW)
    later = NOW + timedelta(days=3)
    kept.append(_delivered(store, "recent@ministry.govt.nz", later - timedelta(hours=1)))
    holds.place(engine, address=HELD, message_id=None, reason="OIA 2026-17", now=NOW, by="t")
    before = _log(engine)

    done = dispose(engine, SHORT, later)

    by_class = {d.record_class: d for d in done}
    assert set(by_class) == {RecordClass.MESSAGE, RecordClass.EVIDENCE, RecordClass.QUARANTINE}
    assert by_class[RecordClass.MESSAGE].entries == 3  # two delivered, the receipted one
    assert by_class[RecordClass.QUARANTINE].entries == 1
    for entry_id in [*gone, receipted, quarantined]:
        assert store.get(entry_id) is None
        assert store.events(entry_id) == []
    for entry_id in kept:
        assert store.get(entry_id) is not None and store.events(entry_id)
    with transaction(engine, "read", write=False) as conn:
        assert conn.execute(select(func.count()).select_from(signatures)).scalar() == 0
        remaining = conn.execute(select(func.count()).select_from(events)).scalar()
        verdict = verify(conn, CheckpointTrust())
    assert remaining and verdict.ok and verdict.disposed > 0, verdict

    after = _log(engine)
    assert len(after) == len(before) + 3  # nothing removed: emptied, and 3 disposal records
    for old, new in zip(before, after, strict=False):
        assert (old["seq"], old["digest"]) == (new["seq"], new["digest"])
        text = str(old["record"])
        if new["record"] is None:
            assert HELD not in text and "recent@" not in text and old["record_class"] != "security"
        else:
            assert new["record"] == old["record"]
    assert any(HELD in str(r["record"]) for r in after)  # held records kept
    disposals = [json.loads(str(r["record"])) for r in after[len(before) :]]
    details = {d["details"]["class"]: d["details"] for d in disposals}
    assert details["message"]["authority"] == "GDA test class"
    assert details["message"]["entries"] == "3" and int(details["message"]["log_records"]) > 0
    assert details["message"]["from"] <= details["message"]["to"] < details["message"]["cutoff"]
    assert len(details["quarantine"]["data_digest"]) == 64
    assert dispose(engine, SHORT, later) == []  # once only


def test_released_hold_lets_disposal_proceed(store: QueueStore, engine: Engine) -> None:
    """After the hold is released, the entry it kept is disposed of at the next run."""
    entry_id = _delivered(store, HELD)
    hold = holds.place(engine, address=HELD, message_id=None, reason="r", now=NOW, by="t")
    later = NOW + timedelta(days=3)
    assert [d.entries for d in dispose(engine, SHORT, later)] == []
    holds.release(engine, hold.id, now=later, by="t")
    assert [d.entries for d in dispose(engine, SHORT, later) if d.entries] == [1]
    assert store.get(entry_id) is None


def test_a_message_id_hold_keeps_that_message(store: QueueStore, engine: Engine) -> None:
    """A hold on a Message-ID keeps the entry with it and that message's records."""
    entry_id = _delivered(store, "aroha@ministry.govt.nz")
    holds.place(
        engine, address=None, message_id="<test-1@agency.govt.nz>", reason="r", now=NOW, by="t"
    )
    dispose(engine, SHORT, NOW + timedelta(days=3))
    assert store.get(entry_id) is not None


def test_a_hold_needs_one_target_and_a_reason(engine: Engine) -> None:
    """A hold with neither address nor Message-ID, or without a reason, is refused."""
    with pytest.raises(RecordsError, match="records-bad-hold"):
        holds.place(engine, address=None, message_id=None, reason="r", now=NOW, by="t")
    with pytest.raises(RecordsError, match="records-bad-hold"):
        holds.place(engine, address="a@b.nz", message_id=None, reason=" ", now=NOW, by="t")
    with pytest.raises(RecordsError, match="records-no-hold"):
        holds.release(engine, "nope", now=NOW, by="t")
