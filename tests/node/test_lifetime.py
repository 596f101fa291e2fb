"""THREATS.md A ★ "peer gateway down for hours", on a simulated clock.

The agency node's services are driven directly (no listeners): its queue, keys, directory
and Maildirs are the real ones, the clock is a test value moved from one due time to the
next. The provider's gateway is down (nothing listens on its port) for the whole retry
schedule, or for some hours and then back. The node is closed and opened again part way,
as a restart would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securemail.deliver.seal import Origin
from securemail.demo.exchange import Script, find_delivered
from securemail.node.context import Node
from securemail.node.roles import build_roles
from securemail.node.run import open_node
from securemail.node.workers import run_body_purge, run_warnings
from securemail.protect.service import Outbound
from securemail.queue import Direction, Entry, NewMessage, State
from securemail.unprotect.service import Inbound
from tests.node.conftest import WAIT, Federation, mailbox_files, running

MINUTE = timedelta(minutes=1)
SCHEDULE = (MINUTE, 5 * MINUTE, 30 * MINUTE)
WARN_AFTER = timedelta(hours=2)
MAX_LIFETIME = timedelta(hours=6)
SCRIPT = Script(
    "peer down for hours",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "[IN-CONFIDENCE] Lifetime",
)
BODY_TEXT = b"This is demo message"


@dataclass
class Clock:
    """The node's clock in these tests: it moves only when the test moves it."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def set_retry(config: Path) -> None:
    """Give the agency node an hours-long retry policy (the demo's is seconds long)."""
    text = config.read_text()
    demo = 'schedule = ["2s", "5s", "10s"]\nwarn_after = "10m"\nmax_lifetime = "1h"'
    assert demo in text
    config.write_text(
        text.replace(demo, 'schedule = ["1m", "5m", "30m"]\nwarn_after = "2h"\nmax_lifetime = "6h"')
    )


def expected_attempts(start: datetime) -> Iterator[datetime]:
    """When the schedule says to try: its delays, the last repeating, then the deadline."""
    deadline, when, n = start + MAX_LIFETIME, start, 0
    while when < deadline:
        yield when
        when = min(when + SCHEDULE[min(n, len(SCHEDULE) - 1)], deadline)
        n += 1
    yield deadline


async def attempt(node: Node, entry_id: str) -> Entry:
    """Claim the due outbound entry and make one attempt, as the outbound worker does."""
    claimed = await asyncio.to_thread(node.store.claim, Direction.OUTBOUND, node.clock(), 16)
    assert [e.id for e in claimed] == [entry_id]
    return await Outbound(build_roles(node).protect).process(claimed[0])


async def warn(node: Node) -> int:
    """Run the node's warning loop until the entries due a warning are warned; how many."""
    waiting = [e.id for e in await asyncio.to_thread(node.store.warnings_due, node.clock())]
    if not waiting:
        return 0
    stop = asyncio.Event()
    task = asyncio.create_task(run_warnings(build_roles(node).notices, stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await asyncio.to_thread(all_warned, node, waiting):
        assert loop.time() < deadline and not task.done(), "the warning loop did not warn"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, WAIT)
    return len(waiting)


async def purge(node: Node, clock: Clock, entry_id: str) -> None:
    """Run the node's body purge loop before and after ``keep_body`` has passed."""
    for later, kept in ((timedelta(0), True), (node.config.retry.keep_body + MINUTE, False)):
        clock.now += later
        stop = asyncio.Event()
        keep = node.config.retry.keep_body
        task = asyncio.create_task(run_body_purge(node.queue, keep, clock, stop))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, WAIT)
        assert (await asyncio.to_thread(node.store.body, entry_id) != b"") is kept


def due(entry: Entry | None) -> datetime:
    """When ``entry`` is next due (it must be waiting for a retry)."""
    assert entry is not None and entry.next_attempt_at is not None
    return entry.next_attempt_at


def all_warned(node: Node, ids: list[str]) -> bool:
    entries = [node.store.get(i) for i in ids]
    return all(e is not None and e.warned for e in entries)


async def deliver_local(node: Node) -> None:
    """Deliver the notices queued for our own users, as the inbound worker does."""
    for entry in await asyncio.to_thread(node.store.claim, Direction.INBOUND, node.clock(), 16):
        assert entry.kind == "notice"
        assert (await Inbound(build_roles(node).unprotect).process(entry)).state is State.DELIVERED


def enqueue(node: Node, n: int) -> str:
    message = NewMessage(
        Direction.OUTBOUND,
        "agency",
        SCRIPT.mail_from,
        SCRIPT.to,
        SCRIPT.message(n, node.clock()),
        client="test",
        message_id=Script.message_id(n, "agency.govt.nz"),
    )
    return node.store.enqueue(message, node.clock())


def notices(federation: Federation) -> list[bytes]:
    box = federation.nodes["agency"].mailbox(SCRIPT.mail_from) / "new"
    return sorted(p.read_bytes() for p in box.iterdir()) if box.is_dir() else []


def test_peer_down_past_the_lifetime_gives_one_delay_and_one_failure_notice(
    federation: Federation,
) -> None:
    """Retries follow the schedule across a restart; one delayed, then one failure notice,
    each sealed in the sender's mailbox as the gateway's own; once the bounce is final for
    ``[retry] keep_body``, the node's purge loop drops the body and keeps the entry."""
    config = federation.nodes["agency"].config
    set_retry(config)
    start = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(start)

    async def scenario() -> tuple[list[datetime], list[datetime], Entry]:
        node = await open_node(federation.config("agency"), clock)
        entry_id = enqueue(node, 1)
        tried: list[datetime] = []
        warned_at: list[datetime] = []
        entry = node.store.get(entry_id)
        while entry is not None and entry.state is not State.BOUNCED:
            clock.now = due(entry)
            if await warn(node):
                warned_at.append(clock.now)
            tried.append(clock.now)
            entry = await attempt(node, entry_id)
            await deliver_local(node)
            if len(tried) == 3:  # restart: everything the schedule knows is in the queue
                await asyncio.to_thread(node.store.close)
                node = await open_node(federation.config("agency"), clock)
                assert node.store.get(entry_id) == entry
        assert node.store.warnings_due(clock.now + MAX_LIFETIME) == []
        assert node.accounts is not None
        seal = node.accounts.mailbox_seal
        origins = {seal.origin_of(SCRIPT.mail_from, n) for n in notices(federation)}
        assert origins == {Origin.NOTICE}
        await purge(node, clock, entry_id)
        node.store.close()
        assert entry is not None
        return tried, warned_at, entry

    tried, warned_at, entry = asyncio.run(scenario())
    assert tried == list(expected_attempts(start))
    first_due = next(t for t in tried if t - start >= WARN_AFTER)
    assert warned_at == [first_due]
    assert entry.state is State.BOUNCED
    assert entry.recipients[0].reason == "expired"
    delayed, failed = sorted(notices(federation), key=lambda n: b"Action: failed" in n)
    assert b"Action: delayed" in delayed and b"Action: failed" not in delayed
    assert b"X-SecureMail-Reason: connect-failed" in delayed
    assert b"Action: failed" in failed and b"X-SecureMail-Reason: expired" in failed
    assert b"multipart/signed" in delayed and b"multipart/signed" in failed
    assert BODY_TEXT not in delayed and BODY_TEXT not in failed
    assert len(notices(federation)) == 2


def test_peer_back_after_hours_gets_one_delivery_and_only_a_delay_notice(
    federation: Federation,
) -> None:
    """A peer down for three hours then back: one delivery, one delayed notice, no failure."""
    set_retry(federation.nodes["agency"].config)
    start = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(start)
    mailbox = federation.nodes["provider"].mailbox(SCRIPT.to[0])

    async def scenario() -> tuple[Entry, bytes | None, int]:
        node = await open_node(federation.config("agency"), clock)
        entry_id = enqueue(node, 2)
        entry = node.store.get(entry_id)
        while due(entry) - start < timedelta(hours=3):
            clock.now = due(entry)
            await warn(node)
            entry = await attempt(node, entry_id)
            await deliver_local(node)
            assert entry.state is State.DEFERRED
        clock.now = due(entry)
        async with running(federation, "provider"):
            entry = await attempt(node, entry_id)
            await deliver_local(node)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            found = find_delivered(mailbox, Script.message_id(2, "agency.govt.nz"))
            while found is None and loop.time() < deadline:
                await asyncio.sleep(0.1)
                found = find_delivered(mailbox, Script.message_id(2, "agency.govt.nz"))
            await asyncio.sleep(0.3)  # a second copy would show by now
        node.store.close()
        return entry, found, len(mailbox_files(mailbox))

    entry, found, copies = asyncio.run(scenario())
    assert entry.state is State.DELIVERED
    assert found is not None and BODY_TEXT in found
    assert copies == 1
    received = notices(federation)
    assert len(received) == 1
    assert b"Action: delayed" in received[0]
