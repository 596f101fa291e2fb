"""The gateway's refresher: newer versions become current, refused ones leave it unchanged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from securemail.directory import Directory
from securemail.directory.fetch import Source
from securemail.directory.refresh import DirectoryRefresher
from securemail.directory.store import DirectoryStore
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, Operator
from tests.directory.test_store import Version, chain


@pytest.fixture
def versions(pki: Pki, operator: Operator, first: Directory) -> list[Version]:
    return chain(first, pki, operator.signer, 2)


@pytest.fixture
def refresher(pki: Pki, tmp_path: Path) -> DirectoryRefresher:
    """A refresher reading ``tmp_path/published/directory.json`` into ``tmp_path/state``."""
    (tmp_path / "published").mkdir()
    store = DirectoryStore(tmp_path / "state", [pki.ca.certificate], federation=FEDERATION)
    source = Source(str(tmp_path / "published" / "directory.json"))
    return DirectoryRefresher(store, source, clock=lambda: NOW)


def publish(refresher: DirectoryRefresher, version: Version) -> None:
    version.publish(Path(refresher.source.location))


def serial(refresher: DirectoryRefresher) -> int | None:
    return None if refresher.current is None else refresher.current.serial


async def until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait, polling, until ``condition`` holds; fail the test after ``seconds``."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


def test_refresh_once_accepts_newer_and_keeps_current_on_rollback(
    refresher: DirectoryRefresher, versions: list[Version], caplog: pytest.LogCaptureFixture
) -> None:
    """Serial 1, then 2, become current; serial 1 again is refused and 2 stays."""
    caplog.set_level(logging.INFO, logger="securemail.directory.refresh")

    async def scenario() -> list[bool]:
        results = []
        for version in (versions[0], versions[1], versions[1], versions[0]):
            publish(refresher, version)
            results.append(await refresher.refresh_once(NOW))
        return results

    assert asyncio.run(scenario()) == [True, True, False, False]
    assert serial(refresher) == 2
    assert "directory-rollback" in caplog.text and "keeping serial 2" in caplog.text


def test_run_follows_the_published_files_until_stopped(
    refresher: DirectoryRefresher, versions: list[Version], caplog: pytest.LogCaptureFixture
) -> None:
    """With a short interval the loop picks up serial 1, then 2, and refuses a rollback."""

    async def scenario() -> None:
        stop = asyncio.Event()
        publish(refresher, versions[0])
        task = asyncio.create_task(refresher.run(0.02, stop))
        await until(lambda: serial(refresher) == 1)
        publish(refresher, versions[1])
        await until(lambda: serial(refresher) == 2)
        publish(refresher, versions[0])
        await until(lambda: "directory-rollback" in caplog.text)
        assert serial(refresher) == 2
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    asyncio.run(scenario())
    assert (refresher.store.state / "directory.json").read_bytes() == versions[1].document


def test_run_starts_from_the_state_when_the_source_is_down(
    refresher: DirectoryRefresher, versions: list[Version], caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted gateway serves its last good version, stale or not, if it cannot fetch."""
    refresher.store.accept(versions[1].fetched, NOW)
    later = versions[1].directory.next_update + timedelta(hours=1)
    restarted = DirectoryRefresher(refresher.store, refresher.source, clock=lambda: later)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(restarted.run(60, stop))
        await until(lambda: "directory-unavailable" in caplog.text)
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    asyncio.run(scenario())
    assert serial(restarted) == 2
    assert "past its next update" in caplog.text


def test_tampered_state_is_not_served(
    refresher: DirectoryRefresher, versions: list[Version], caplog: pytest.LogCaptureFixture
) -> None:
    """A state that no longer verifies is refused at start: nothing is current."""
    refresher.store.accept(versions[0].fetched, NOW)
    document = refresher.store.state / "directory.json"
    document.write_bytes(document.read_bytes().replace(b"ministry", b"ministrx"))
    assert not asyncio.run(refresher.load(NOW))
    assert refresher.current is None
    assert "directory-signature-invalid" in caplog.text
