"""FRESH keys: the Maildir skips looking for a copy only where no copy can be, across a
failed folder fsync, a store that cannot tell what it holds, and a crash before the record."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable, Sequence, Set
from datetime import timedelta
from pathlib import Path

import pytest

from securemail.deliver import MaildirTarget
from securemail.deliver.seal import Origin
from securemail.queue import Direction, Entry, Event, State
from securemail.queue.store import QueueStore
from securemail.replies import Reply, temporary
from securemail.unprotect.service import Inbound
from tests.conftest import NOW, Pki
from tests.support.roles import open_queue, org_keys, unprotect_context
from tests.unprotect.test_service import from_ministry, inbound

ALICE = "alice@agency.govt.nz"
LEASE = timedelta(seconds=30)


class Maildir(MaildirTarget):
    """A real Maildir that notes which recipients it was told are FRESH, whose folder
    fsyncs can be made to fail (EIO), and that can die right after storing."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fresh_given: list[frozenset[str]] = []
        self.failing_syncs = 0  # how many folder fsyncs fail from now on
        self.die_after_storing = False

    async def deliver(
        self,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        key: str,
        *,
        keywords: Set[str] = frozenset(),
        origin: Origin = Origin.DELIVERED,
        fresh: Set[str] = frozenset(),
    ) -> dict[str, Reply]:
        self.fresh_given.append(frozenset(fresh))
        replies = await super().deliver(
            mail_from, recipients, body, key, keywords=keywords, origin=origin, fresh=fresh
        )
        if self.die_after_storing:
            raise RuntimeError("the process died after the store, before the record")
        return replies

    def _sync_folder(self, folder: Path) -> None:
        if self.failing_syncs:
            self.failing_syncs -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super()._sync_folder(folder)


Step = Callable[[Inbound, QueueStore, str], Awaitable[None]]


def run(pki: Pki, tmp_path: Path, target: MaildirTarget, *steps: Step) -> Entry:
    """One message from the ministry queued for alice, then ``steps`` in turn (each given
    the worker, the store and the entry's id); the entry as it ends."""

    async def scenario() -> Entry:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            orgs = {"agency": org_keys(pki.agency, "agency", tmp_path)}
            context = unprotect_context(pki, queue, orgs, target)
            entry_id = queue.store.enqueue(inbound(from_ministry(pki)), NOW)
            for step in steps:
                await step(Inbound(context), queue.store, entry_id)
            entry = queue.store.get(entry_id)
            assert entry is not None
            return entry

    return asyncio.run(scenario())


def outside(action: Callable[[], object]) -> Step:
    """A step that happens outside the worker (a client, the disk)."""

    async def step(inbound: Inbound, store: QueueStore, entry_id: str) -> None:
        await asyncio.to_thread(action)  # off the loop: it may run a scenario of its own

    return step


def attempt(hours: int) -> Step:
    """Claim the entry ``hours`` after NOW (a retry, or a takeover of an expired lease)
    and process it; an error escapes as from a process that died."""

    async def step(inbound: Inbound, store: QueueStore, entry_id: str) -> None:
        [claimed] = store.claim(
            Direction.INBOUND, NOW + timedelta(hours=hours), 1, owner=f"gw/{hours}", lease=LEASE
        )
        assert claimed.id == entry_id
        await inbound.process(claimed)

    return step


def mailbox(root: Path) -> Path:
    return root / "agency.govt.nz" / "alice"


def files(root: Path) -> list[str]:
    box = mailbox(root)
    return sorted(p.name for sub in ("new", "cur") for p in (box / sub).iterdir())


def read_by_a_client(root: Path) -> None:
    """Mark every message seen, as an IMAP client does: new/ to cur/ with the flag S, and in
    cur/ (where keyworded mail is stored) the flag added to the name."""
    box = mailbox(root)
    for message in (box / "new").iterdir():
        os.rename(message, box / "cur" / f"{message.name}:2,S")
    for message in (box / "cur").iterdir():
        base, _, flags = message.name.partition(":2,")
        if "S" not in flags:
            os.rename(message, box / "cur" / f"{base}:2,{''.join(sorted(flags + 'S'))}")


def read(root: Path) -> bool:
    """Whether the mailbox holds exactly one message, and a client has read it."""
    found = files(root)
    return len(found) == 1 and "S" in found[0].partition(":2,")[2]


def test_a_failed_folder_fsync_leaves_nothing_and_the_retry_is_fresh(
    pki: Pki, tmp_path: Path
) -> None:
    """The new/ fsync fails: the link is taken back (and that synced), the reply is 452,
    the key is released; the retry reserves it FRESH and stores exactly one copy."""
    root = tmp_path / "mail"
    root.mkdir()
    target = Maildir(root)
    target.failing_syncs = 1
    seen: list[list[str]] = []
    entry = run(
        pki, tmp_path, target, attempt(0), outside(lambda: seen.append(files(root))), attempt(1)
    )
    assert seen == [[]]  # nothing stayed after the failure
    assert entry.state is State.DELIVERED
    assert target.fresh_given == [{ALICE}, {ALICE}]
    assert len(files(root)) == 1
    events = [(e.event, e.reason) for e in entry_events(tmp_path)]
    assert ("deferred", "store-unavailable") in events, events


def entry_events(tmp_path: Path) -> list[Event]:
    store = QueueStore.open(f"sqlite:///{tmp_path / 'queue.sqlite'}")
    try:
        [entry] = store.list()
        return store.events(entry.id)
    finally:
        store.close()


def the_copy_came_back(pki: Pki, tmp_path: Path, root: Path) -> None:
    """What the failed fsyncs left unknown: the link survived after all, and a client read
    it. The copy is made as delivery makes it (another queue, the same Maildir)."""
    (tmp_path / "elsewhere").mkdir()
    run(pki, tmp_path / "elsewhere", MaildirTarget(root), attempt(0))
    read_by_a_client(root)


def test_a_store_that_cannot_tell_defers_and_the_next_attempt_looks(
    pki: Pki, tmp_path: Path
) -> None:
    """The new/ fsync fails and so does the one after taking the link back: the attempt
    is deferred whole with the store's reply and keeps its key, so the next attempt is not
    FRESH and finds the copy (read by a client meanwhile) instead of storing a second."""
    root = tmp_path / "mail"
    root.mkdir()
    target = Maildir(root)
    target.failing_syncs = 2
    entry = run(
        pki,
        tmp_path,
        target,
        attempt(0),
        outside(lambda: the_copy_came_back(pki, tmp_path, root)),
        attempt(1),
    )
    assert entry.state is State.DELIVERED
    assert target.fresh_given == [{ALICE}, frozenset()]
    assert read(root), files(root)
    events = [(e.event, e.reason) for e in entry_events(tmp_path)]
    assert ("deferred", "store-unavailable") in events, events


@pytest.mark.parametrize("after", ["crash", "deferred"])
def test_a_death_after_the_store_keeps_the_key_and_the_next_attempt_looks(
    pki: Pki, tmp_path: Path, after: str
) -> None:
    """The process dies after the Maildir stored the message and before the record (a
    crash: its lease runs out; or an error the worker defers): the key stays reserved, so
    the next attempt is not FRESH and finds the copy a client moved to cur/ meanwhile."""
    root = tmp_path / "mail"
    root.mkdir()
    target = Maildir(root)
    target.die_after_storing = True

    async def first(inbound: Inbound, store: QueueStore, entry_id: str) -> None:
        with pytest.raises(RuntimeError):
            await attempt(0)(inbound, store, entry_id)
        target.die_after_storing = False
        if after == "deferred":  # what the worker loop does with an error
            store.defer(entry_id, temporary("internal-error", "RuntimeError"), NOW)

    entry = run(pki, tmp_path, target, first, outside(lambda: read_by_a_client(root)), attempt(1))
    assert entry.state is State.DELIVERED
    assert target.fresh_given == [{ALICE}, frozenset()]
    assert read(root), files(root)
