"""The claim loop (``node/workers.py``) around the real outbound worker on a real SQLite
queue: a worker that outlived its lease is fenced out, and only real losses are logged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from securemail.node.workers import CONCURRENCY, WorkerLoop, run_worker
from securemail.policy.model import NodePolicy
from securemail.protect.context import ProtectContext
from securemail.protect.service import Outbound
from securemail.queue import Direction, Entry, QueueStore, State
from securemail.queue.manager import QueueManager
from securemail.relay import Destination
from securemail.replies import Reply, ok
from tests.conftest import NOW, Pki
from tests.protect.test_service import outbound
from tests.support.roles import Queue, directory, notices_for, open_queue, org_keys

LEASE = timedelta(seconds=0.3)  # renewed every 0.1 s
OWNER = "gw-a/11"


class StallingRelay:
    """A relay whose sends take ``stall`` seconds; before answering 250 it lets another
    process take the entry over (``take_over``) when asked to, as if this one had stalled
    past its lease."""

    def __init__(self, store: QueueStore, *, stall: float, take_over: bool) -> None:
        self.store, self.stall, self.take_over = store, stall, take_over
        self.sent = 0

    async def send(
        self, destination: Destination, mail_from: str, recipients: Sequence[str], body: bytes
    ) -> dict[str, Reply]:
        if self.take_over:
            later = NOW + timedelta(hours=1)  # the other process's clock: the lease expired
            [taken] = self.store.claim(Direction.OUTBOUND, later, owner="gw-b/7", lease=LEASE)
            assert taken.claimed_by == "gw-b/7"
        await asyncio.sleep(self.stall)
        self.sent += 1
        return {r: ok("queued") for r in recipients}


def run_one(pki: Pki, tmp_path: Path, *, stall: float, take_over: bool, linger: float) -> Entry:
    """One entry through ``run_worker`` with the outbound worker; ``linger`` seconds of work
    after its record (as notices and wake-ups take); the entry as the queue has it after."""

    async def scenario() -> Entry:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            relay = StallingRelay(queue.store, stall=stall, take_over=take_over)
            worker = Outbound(context(pki, tmp_path, queue, relay))

            async def process(entry: Entry) -> Entry:
                recorded = await worker.process(entry)
                await asyncio.sleep(linger)
                return recorded

            entry_id = queue.store.enqueue(outbound(), NOW)
            loop = WorkerLoop(
                queue.access, Direction.OUTBOUND, asyncio.Event(), OWNER, lambda: NOW, LEASE, 0.05
            )
            stop = asyncio.Event()
            running = asyncio.create_task(run_worker(loop, process, stop))
            await asyncio.sleep(0.2)
            stop.set()  # a drain: the entry in hand is finished first
            await asyncio.wait_for(running, 30)
            assert relay.sent == 1
            entry = queue.store.get(entry_id)
            assert entry is not None
            return entry

    return asyncio.run(scenario())


def context(pki: Pki, tmp_path: Path, queue: Queue, relay: StallingRelay) -> ProtectContext:
    orgs = {"agency": org_keys(pki.agency, "agency", tmp_path)}
    return ProtectContext(
        helo="gw.test",
        orgs=orgs,
        directory=lambda: directory(pki),
        anchors=(pki.ca.certificate,),
        node_policy=NodePolicy(),
        smarthost=None,
        relay=relay,
        queue=queue.access,
        notices=notices_for(orgs, queue.access),
        clock=lambda: NOW,
    )


def test_a_worker_that_outlived_its_lease_records_nothing(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process takes the entry over while this worker stalls: the renewal reports
    the loss with the new holder, the late 250 is refused (queue-lease-lost) and logged,
    and the entry stays the new holder's: not delivered, not deferred by the stale one."""
    caplog.set_level(logging.WARNING, "securemail.node")
    entry = run_one(pki, tmp_path, stall=0.5, take_over=True, linger=0)
    assert (entry.state, entry.claimed_by, entry.attempts) == (State.ACTIVE, "gw-b/7", 0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("queue-lease-lost: outcome not recorded" in m for m in messages), messages
    assert any("leases lost" in m and "(gw-b/7)" in m for m in messages), messages
    assert not any("failed; deferred" in m for m in messages), messages


def test_an_entry_settled_between_renewals_is_not_reported_lost(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry recorded delivered while its task still runs (its notices, its wake-ups)
    drops out of the renewal without a "leases lost" warning: it was settled, not lost."""
    caplog.set_level(logging.WARNING, "securemail.node")
    entry = run_one(pki, tmp_path, stall=0, take_over=False, linger=0.5)
    assert (entry.state, entry.claimed_by) == (State.DELIVERED, OWNER)
    assert [r.getMessage() for r in caplog.records] == []


class CountingClaims:
    """The queue manager with its claims counted (every other call passes through)."""

    def __init__(self, manager: QueueManager) -> None:
        self._manager = manager
        self.claims: list[int] = []  # how many entries each claim took

    def claim(self, *args: Any, **kwargs: Any) -> list[Entry]:
        taken = self._manager.claim(*args, **kwargs)
        self.claims.append(len(taken))
        return taken

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


def claims_for(tmp_path: Path, queued: int, *, told: bool) -> list[int]:
    """Run the claim loop over ``queued`` entries whose processing takes a moment each,
    with no other wake-up and a long poll; what each claim took."""

    async def scenario() -> list[int]:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            counting = CountingClaims(queue.access.manager)
            access = dataclasses.replace(queue.access, manager=cast(QueueManager, counting))
            for _ in range(queued):
                queue.store.enqueue(outbound(), NOW)

            async def process(entry: Entry) -> Entry:
                await asyncio.sleep(0.01 * (1 + len(counting.claims)))
                return entry

            wake, stop = asyncio.Event(), asyncio.Event()
            loop = WorkerLoop(access, Direction.OUTBOUND, wake, OWNER, lambda: NOW, told=told)
            running = asyncio.create_task(run_worker(loop, process, stop))
            await asyncio.sleep(0.3)  # well inside the 1 s poll
            stop.set()
            wake.set()
            await asyncio.wait_for(running, 10)
            return counting.claims

    return asyncio.run(scenario())


def test_finished_entries_claim_again_only_while_more_may_wait(tmp_path: Path) -> None:
    """Three entries, one claim takes them all (slots were left free): their ends wake no
    claim, which under load was an empty transaction for about every other message."""
    assert claims_for(tmp_path, 3, told=True) == [3]


def test_a_full_claim_is_followed_by_one_when_a_slot_frees(tmp_path: Path) -> None:
    """More entries than slots: the first claim fills every slot, so a finished entry
    claims again at once (without waiting for the poll) and the rest are taken."""
    claims = claims_for(tmp_path, CONCURRENCY + 2, told=True)
    assert claims[0] == CONCURRENCY
    assert sum(claims) == CONCURRENCY + 2


def test_a_loop_no_wake_up_reaches_claims_again_at_every_finished_entry(tmp_path: Path) -> None:
    """A worker process on SQLite hears of nothing queued: each finished entry is its
    chance to look again, so its ends do claim (they find nothing here)."""
    claims = claims_for(tmp_path, 3, told=False)
    assert claims[0] == 3
    assert len(claims) > 1
