"""Opening a queue entry (metadata or quarantined) is recorded: console and directly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from securemail.queue import Direction, QueueStore
from securemail.records.access import opened
from securemail.records.schema import log
from securemail.storage.engine import connect, transaction
from tests.queue.conftest import NOW, RETRY, message
from tests.web.console.test_console import client_for


@pytest.fixture
def store(url: str, engine: Engine) -> Iterator[QueueStore]:
    with QueueStore.open(url, retry=RETRY) as opened_store:
        yield opened_store


def _last(engine: Engine) -> dict[str, object]:
    with transaction(engine, "read", write=False) as conn:
        text = conn.execute(select(log.c.record).order_by(log.c.seq.desc()).limit(1)).scalar()
    assert isinstance(text, str)
    value: dict[str, object] = json.loads(text)
    return value


def test_opening_a_quarantined_entry_is_recorded(store: QueueStore, engine: Engine) -> None:
    """Opening a quarantined entry leaves a security record naming who, how and its people."""
    entry_id = store.enqueue(message("bob@ministry.govt.nz"), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.quarantine(entry_id, "integrity-failed", "tag mismatch", NOW)
    entry = store.get(entry_id)
    assert entry is not None
    opened(engine, entry, by="cli:ops", via="cli", now=NOW)
    last = _last(engine)
    assert last["event"] == "operator.opened-quarantined" and last["class"] == "security"
    assert last["subjects"] == ["alice@agency.govt.nz", "bob@ministry.govt.nz"]
    assert last["details"] == {
        "by": "cli:ops",
        "via": "cli",
        "queue_id": entry_id,
        "state": "quarantined",
    }


def test_the_console_records_an_operator_opening_an_entry(tmp_path: Path) -> None:
    """The console's entry page records operator.opened-metadata with the operator's name."""
    url = f"sqlite:///{tmp_path / 'console.db'}"
    with QueueStore.open(url, retry=RETRY) as console_store:
        entry_id = console_store.enqueue(message(), NOW)
        assert client_for(console_store).get(f"/console/queue/{entry_id}").status_code == 200
    engine = connect(url)
    last = _last(engine)
    engine.dispose()
    assert last["event"] == "operator.opened-metadata"
    assert last["details"]["by"] == "operator@agency.govt.nz"  # type: ignore[index]
