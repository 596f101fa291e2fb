"""Folder fsyncs shared by concurrent deliveries: one round covers those who asked while
another ran, no one returns before a round that started after it asked, a failure fails all
it covered."""

from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from securemail.deliver.folder_sync import FolderSyncs
from securemail.durable import fsync_dir


class HeldSyncs:
    """A real folder fsync that the test can hold at its start, and can make fail."""

    def __init__(self) -> None:
        self.started: list[threading.Event] = []
        self.release: list[threading.Event] = []
        self.fail: set[int] = set()  # round numbers (from 0) that fail with EIO
        self._lock = threading.Lock()

    def __call__(self, folder: Path) -> None:
        with self._lock:
            number = len(self.started)
            started, release = threading.Event(), threading.Event()
            self.started.append(started)
            self.release.append(release)
        started.set()
        assert release.wait(timeout=30)
        if number in self.fail:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        fsync_dir(folder)

    def wait_started(self, number: int) -> None:
        for _ in range(3000):
            with self._lock:
                if len(self.started) > number:
                    break
            threading.Event().wait(0.01)
        assert self.started[number].wait(timeout=30)


def waiting(
    syncs: FolderSyncs, folder: Path, pool: ThreadPoolExecutor, count: int
) -> list[Future[None]]:
    futures = [pool.submit(syncs.sync, folder) for _ in range(count)]
    threading.Event().wait(0.2)  # they are all waiting on the condition by now
    return futures


def test_callers_during_a_round_share_the_next_one(tmp_path: Path) -> None:
    """Three callers who ask while a round runs wait for the round after it (which starts
    after they asked), and that one round serves all three."""
    held = HeldSyncs()
    syncs = FolderSyncs(held)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(syncs.sync, tmp_path)
        held.wait_started(0)
        later = waiting(syncs, tmp_path, pool, 3)
        assert not any(f.done() for f in later)
        held.release[0].set()
        first.result(timeout=30)
        held.wait_started(1)
        assert not any(f.done() for f in later)  # the round that covers them is running
        held.release[1].set()
        for future in later:
            future.result(timeout=30)
    assert len(held.started) == 2


def test_a_failed_round_fails_everyone_it_covered(tmp_path: Path) -> None:
    """A round that fails fails each caller it covered (each then takes its link back);
    the round before it and the one after succeed for theirs."""
    held = HeldSyncs()
    held.fail = {1}
    syncs = FolderSyncs(held)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(syncs.sync, tmp_path)
        held.wait_started(0)
        covered = waiting(syncs, tmp_path, pool, 2)
        held.release[0].set()
        first.result(timeout=30)
        held.wait_started(1)
        held.release[1].set()
        for future in covered:
            with pytest.raises(OSError) as failed:
                future.result(timeout=30)
            assert failed.value.errno == errno.EIO
        after = pool.submit(syncs.sync, tmp_path)
        held.wait_started(2)
        held.release[2].set()
        after.result(timeout=30)
