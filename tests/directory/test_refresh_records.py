"""The refresher writes directory changes into the records log: each newly accepted serial
once, each distinct refusal once, metadata only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from securemail.directory import Directory
from securemail.directory.document import digest
from securemail.directory.fetch import Source
from securemail.directory.refresh import DirectoryRefresher
from securemail.directory.store import DirectoryStore
from securemail.records.schema import log
from securemail.storage.engine import connect, transaction, upgrade
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, Operator
from tests.directory.test_store import Version, chain


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """The node database (SQLite) at the newest schema."""
    engine = connect(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def versions(pki: Pki, operator: Operator, first: Directory) -> list[Version]:
    return chain(first, pki, operator.signer, 2)


def _refresher(pki: Pki, tmp_path: Path, engine: Engine) -> DirectoryRefresher:
    (tmp_path / "published").mkdir()
    store = DirectoryStore(tmp_path / "state", [pki.ca.certificate], federation=FEDERATION)
    source = Source(str(tmp_path / "published" / "directory.json"))
    return DirectoryRefresher(store, source, clock=lambda: NOW, records=engine)


def _records(engine: Engine) -> list[dict[str, object]]:
    query = select(log.c.record).where(log.c.event.like("directory.%")).order_by(log.c.seq)
    with transaction(engine, "test", write=False) as conn:
        return [json.loads(t) for t in conn.execute(query).scalars()]


def test_accepted_serials_and_refusals_are_recorded_once_each(
    pki: Pki, tmp_path: Path, engine: Engine, versions: list[Version]
) -> None:
    """Serials 1 and 2 are recorded with their digests; 2 fetched again is no change; the
    rollback to 1, fetched twice, is one refusal naming its reason and the serial kept."""
    refresher = _refresher(pki, tmp_path, engine)

    async def scenario() -> None:
        for version in (versions[0], versions[1], versions[1], versions[0], versions[0]):
            version.publish(Path(refresher.source.location))
            await refresher.refresh_once(NOW)

    asyncio.run(scenario())
    found = _records(engine)
    assert [r["event"] for r in found] == [
        "directory.accepted", "directory.accepted", "directory.refused"]  # fmt: skip
    assert found[0]["details"] == {"serial": "1", "digest": digest(versions[0].document)}
    assert found[1]["details"] == {"serial": "2", "digest": digest(versions[1].document)}
    refused = found[2]["details"]
    assert isinstance(refused, dict)
    assert refused["reason"] == "directory-rollback" and refused["kept"] == "2"
    assert all(r["class"] == "security" and r["subjects"] == [] for r in found)
