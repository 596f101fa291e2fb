"""An upstream queue's forwarding, delay and failure notices, on a real queue with a
recording relay (profile §11.1, SM-UPQ-3 and 4)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from securemail.config.node import UpstreamSettings
from securemail.directory.model import Directory, spki_pin
from securemail.policy.model import NodePolicy
from securemail.protect.context import ProtectContext
from securemail.queue import Direction, Entry, NewMessage, State
from securemail.relay import RelayError, RelayReason
from securemail.replies import temporary
from securemail.upstream.context import UpstreamContext
from securemail.upstream.forward import Forwarder
from securemail.upstream.watch import notify_delayed
from tests.conftest import NOW, Pki
from tests.support.roles import Queue, RecordingRelay, notices_for, open_queue, org_keys
from tests.upstream.conftest import suspended

BOB = "bob@ministry.govt.nz"
SETTINGS = UpstreamSettings(
    ("ministry",), keep_for=timedelta(hours=2), delay_notice_after=timedelta(hours=1)
)
T = TypeVar("T")


def held(body: bytes, *, auth: str = "agency", sender: str = "alice@agency.govt.nz") -> NewMessage:
    return NewMessage(
        Direction.OUTBOUND, "ministry", sender, (BOB,), body, client="peer 127.0.0.9",
        kind="upstream", auth=auth,
    )  # fmt: skip


def on_queue(
    pki: Pki,
    tmp_path: Path,
    members: Directory,
    relay: RecordingRelay,
    step: Callable[[UpstreamContext, Queue], Awaitable[T]],
    *,
    now: datetime = NOW,
) -> tuple[T, list[Entry]]:
    """Run ``step`` with the council's upstream queue context; every entry afterwards."""

    async def scenario() -> tuple[T, list[Entry]]:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            orgs = {"council": org_keys(pki.council, "council", tmp_path)}
            protect = ProtectContext(
                helo="queue.test",
                orgs=orgs,
                directory=lambda: members,
                anchors=(pki.ca.certificate,),
                node_policy=NodePolicy(),
                smarthost=None,
                relay=relay,
                queue=queue.access,
                notices=notices_for(orgs, queue.access),
                clock=lambda: now,
            )
            result = await step(UpstreamContext(protect, SETTINGS, orgs["council"]), queue)
            return result, queue.store.list()

    return asyncio.run(scenario())


def forward_once(message: NewMessage) -> Callable[[UpstreamContext, Queue], Awaitable[Entry]]:
    async def step(context: UpstreamContext, queue: Queue) -> Entry:
        queue.store.enqueue(message, NOW)
        [claimed] = queue.store.claim(Direction.OUTBOUND, context.protect.clock(), 1)
        return await Forwarder(context).process(claimed)

    return step


def test_forwarded_unchanged_to_the_members_gateway_pinned(
    pki: Pki, tmp_path: Path, members: Directory, ciphertext: bytes
) -> None:
    """The stored ciphertext goes byte for byte, from the original sender, to the member's
    endpoint pinned to the member's key; its 250 delivers the entry."""
    relay = RecordingRelay()
    entry, _ = on_queue(pki, tmp_path, members, relay, forward_once(held(ciphertext)))
    [sent] = relay.sent
    assert (sent.destination.host, sent.destination.port) == ("mx.ministry.govt.nz", 25)
    assert sent.destination.peer_tls is not None
    assert sent.destination.peer_tls.pins == frozenset({spki_pin(pki.ministry.certificate)})
    assert (sent.mail_from, sent.recipients, sent.body) == (
        "alice@agency.govt.nz",
        (BOB,),
        ciphertext,
    )
    assert entry.state is State.DELIVERED


def test_gateway_down_keeps_it_deferred_and_nothing_is_said(
    pki: Pki, tmp_path: Path, members: Directory, ciphertext: bytes
) -> None:
    """A gateway that does not answer leaves the entry deferred; no notice yet."""
    relay = RecordingRelay(failure=RelayError(RelayReason.CONNECT_FAILED, "refused"))
    entry, entries = on_queue(pki, tmp_path, members, relay, forward_once(held(ciphertext)))
    assert entry.state is State.DEFERRED and len(entries) == 1


def test_suspended_member_waits_rather_than_bouncing(
    pki: Pki, tmp_path: Path, members: Directory, ciphertext: bytes
) -> None:
    """A member without an active entry (suspended meanwhile) is waited for, not bounced."""
    relay = RecordingRelay()
    ministry_out = suspended(members, "ministry")
    entry, _ = on_queue(pki, tmp_path, ministry_out, relay, forward_once(held(ciphertext)))
    assert relay.sent == [] and entry.state is State.DEFERRED


def test_after_keep_for_the_sender_gets_one_signed_failure_notice(
    pki: Pki, tmp_path: Path, members: Directory, ciphertext: bytes
) -> None:
    """Past keep_for the entry bounces (upstream-expired) and the sender's gateway gets a
    notice from the council's postmaster, queued outbound like any mail to a member."""
    relay = RecordingRelay()
    later = NOW + timedelta(hours=3)
    step = forward_once(held(ciphertext))
    entry, entries = on_queue(pki, tmp_path, members, relay, step, now=later)
    assert relay.sent == [] and entry.state is State.BOUNCED
    assert entry.recipients[0].reason == "upstream-expired"
    [notice] = [e for e in entries if e.kind == "notice"]
    assert (notice.direction, notice.org_id, notice.mail_from) == (
        Direction.OUTBOUND,
        "council",
        "",
    )
    assert [r.address for r in notice.recipients] == ["alice@agency.govt.nz"]


def delayed(
    message: NewMessage,
) -> Callable[[UpstreamContext, Queue], Awaitable[int]]:
    async def step(context: UpstreamContext, queue: Queue) -> int:
        entry_id = queue.store.enqueue(message, NOW)
        [claimed] = queue.store.claim(Direction.OUTBOUND, NOW, 1)
        queue.store.defer(claimed.id, temporary("connect-failed", "refused"), NOW)
        first = await notify_delayed(context)
        again = await notify_delayed(context)
        assert queue.store.get(entry_id) is not None
        return first * 10 + again

    return step


def test_one_delay_notice_after_delay_notice_after_to_a_vouched_sender(
    pki: Pki, tmp_path: Path, members: Directory, ciphertext: bytes
) -> None:
    """A message waiting past delay_notice_after gets exactly one delay notice, to its
    sender's gateway, and only when the member that delivered it owns the sender's domain."""
    later = NOW + timedelta(minutes=61)
    sent, entries = on_queue(
        pki, tmp_path, members, RecordingRelay(), delayed(held(ciphertext)), now=later
    )
    assert sent == 10  # one, then none
    [notice] = [e for e in entries if e.kind == "notice"]
    assert [r.address for r in notice.recipients] == ["alice@agency.govt.nz"]
    [waiting] = [e for e in entries if e.kind == "upstream"]
    assert waiting.warned and waiting.state is State.DEFERRED


def test_no_delay_notice_for_a_sender_the_delivering_member_does_not_own(
    pki: Pki, tmp_path: Path, members: Directory, ciphertext: bytes
) -> None:
    """A member delivering mail from another member's domain gets no notice sent anywhere."""
    later = NOW + timedelta(minutes=61)
    forged = held(ciphertext, auth="council")
    sent, entries = on_queue(pki, tmp_path, members, RecordingRelay(), delayed(forged), now=later)
    assert sent == 0 and not [e for e in entries if e.kind == "notice"]
