"""The inbound worker on a real queue, with a recording delivery target: open, check, deliver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from securemail.deliver.seal import Origin
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.queue import Direction, Entry, NewMessage, QueueError, QueueReason, State
from securemail.replies import Reply
from securemail.smime import ProtectOptions, SealedFor, protect
from securemail.unprotect.service import Inbound
from tests.conftest import NOW, Pki
from tests.support.roles import RecordingTarget, open_queue, org_keys, unprotect_context

# The agency's gateway receives the ministry's mail for alice.
FROM_MINISTRY = (
    b"From: Bob Example <bob@ministry.govt.nz>\r\n"
    b"To: alice@agency.govt.nz\r\n"
    b"Subject: Budget figures\r\n"
    b"Message-ID: <test-2@ministry.govt.nz>\r\n"
    b"\r\n"
    b"The figures are attached.\r\n"
)


def inbound(body: bytes) -> NewMessage:
    return NewMessage(
        Direction.INBOUND,
        "agency",
        "bob@ministry.govt.nz",
        ("alice@agency.govt.nz",),
        body,
        client="peer 127.0.0.1",
    )


def process(
    pki: Pki, tmp_path: Path, target: RecordingTarget, *bodies: bytes | NewMessage
) -> list[Entry]:
    """Each of ``bodies`` queued inbound (as from a peer, unless a NewMessage) and processed
    in turn; every entry after them."""

    async def scenario() -> list[Entry]:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            orgs = {"agency": org_keys(pki.agency, "agency", tmp_path)}
            context = unprotect_context(pki, queue, orgs, target)
            for body in bodies:
                queue.store.enqueue(body if isinstance(body, NewMessage) else inbound(body), NOW)
                [claimed] = queue.store.claim(Direction.INBOUND, NOW, 1)
                await Inbound(context).process(claimed)
            return queue.store.list()

    return asyncio.run(scenario())


def from_ministry(pki: Pki) -> bytes:
    """FROM_MINISTRY as the ministry's gateway sends it: signed (sealed for the agency and
    alice), encrypted to the agency."""
    options = ProtectOptions(sealed_for=SealedFor("agency", ("alice@agency.govt.nz",)))
    return protect(
        FROM_MINISTRY, pki.ministry.signer, [pki.agency.certificate], now=NOW, options=options
    ).message


def test_verified_mail_is_delivered_marked_and_once(pki: Pki, tmp_path: Path) -> None:
    """A member's mail is decrypted, verified, marked and stored with the SecureMail keyword;
    the same message queued again (a sender's retry) is not stored twice."""
    message = from_ministry(pki)
    target = RecordingTarget()
    entries = process(pki, tmp_path, target, message, message)
    [stored] = target.stored
    assert stored.recipients == ("alice@agency.govt.nz",)
    assert stored.keywords == {SECUREMAIL_KEYWORD} and stored.origin is Origin.DELIVERED
    assert b"Authentication-Results: gw.test; smime=pass" in stored.body
    assert [e.state for e in entries] == [State.DELIVERED, State.DELIVERED]
    replies = sorted(str(e.recipients[0].last_reply) for e in entries)
    assert replies == ["250 2.0.0 duplicate suppressed", "250 2.0.0 stored"]


def test_the_gateways_own_notice_is_stored_as_the_gateways(pki: Pki, tmp_path: Path) -> None:
    """A notice or receipt this node wrote for one of its users is delivered with origin
    "notice" (so the mailbox seal says it is the gateway's) and without the keyword."""
    report = b"From: postmaster@agency.govt.nz\r\nSubject: SecureMail delivery receipt\r\n\r\nx"
    own = NewMessage(
        Direction.INBOUND, "agency", "", ("alice@agency.govt.nz",), report, client="local",
        kind="notice",
    )  # fmt: skip
    target = RecordingTarget()
    [entry] = process(pki, tmp_path, target, own)
    [stored] = target.stored
    assert entry.state is State.DELIVERED and stored.body == report
    assert stored.origin is Origin.NOTICE and stored.keywords == frozenset()


def test_unreadable_mail_is_quarantined_and_nothing_is_sent(pki: Pki, tmp_path: Path) -> None:
    """Mail that is not SecureMail is quarantined, never delivered, and no notice is queued:
    its sender is unproved (THREATS.md K, signed backscatter)."""
    target = RecordingTarget()
    entries = process(pki, tmp_path, target, FROM_MINISTRY)
    assert target.stored == []
    [quarantined] = entries
    assert quarantined.kind == "mail" and quarantined.state is State.QUARANTINED


@dataclass
class TakenOverStore(RecordingTarget):
    """An SMTP-like store (it cannot tell a second copy) during whose 250 another process
    takes the entry over, as if this one died (or stalled past its lease) right after it."""

    keeps_one_copy = False
    take_over: Callable[[], object] | None = None

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
        replies = await super().deliver(
            mail_from, recipients, body, key, keywords=keywords, origin=origin, fresh=fresh
        )
        if self.take_over is not None:
            self.take_over()
        return replies


def test_a_store_that_cannot_tell_copies_gets_one_across_a_takeover(
    pki: Pki, tmp_path: Path
) -> None:
    """The store said 250, then the entry was taken over before its record: the stale
    record is refused, but the key was marked handed at the 250, so the new holder records
    the recipient delivered without handing the store a second copy."""
    target = TakenOverStore()

    async def scenario() -> tuple[Entry, list[str]]:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            orgs = {"agency": org_keys(pki.agency, "agency", tmp_path)}
            context = unprotect_context(pki, queue, orgs, target)
            entry_id = queue.store.enqueue(inbound(from_ministry(pki)), NOW)
            lease = timedelta(seconds=30)
            [stale] = queue.store.claim(Direction.INBOUND, NOW, 1, owner="gw-a/11", lease=lease)
            later = NOW + timedelta(hours=1)
            target.take_over = lambda: queue.store.claim(
                Direction.INBOUND, later, 1, owner="gw-b/7", lease=lease
            )
            with pytest.raises(QueueError) as refused:
                await Inbound(context).process(stale)
            assert refused.value.reason is QueueReason.LEASE_LOST
            target.take_over = None
            taken = queue.store.get(entry_id)
            assert taken is not None and taken.claimed_by == "gw-b/7"
            recorded = await Inbound(context).process(taken)
            return recorded, [e.event for e in queue.store.events(entry_id)]

    recorded, history = asyncio.run(scenario())
    assert len(target.stored) == 1
    assert recorded.state is State.DELIVERED
    assert recorded.recipients[0].last_reply == "250 2.0.0 handed to the store before a crash"
    assert "handed-before-crash" in history
