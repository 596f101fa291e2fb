"""THREATS.md A: a sending gateway that lost our 250 sends again; the message lands once.

The same protected message reaches the provider's peer listener twice (the exact bytes,
as a sender re-sending its queued copy would), and a third time protected afresh (a new
signature and encryption of the same signed content, as a sender that protects on every
attempt would). Each copy is a queue entry of its own; only the first is delivered, the
others are recorded DELIVERED with "duplicate suppressed". The check holds for Maildir
delivery and for delivery onward to the organisation's own SMTP store, and for copies that
were queued together (the receiving node was restarted with both in its queue) and are
worked on at the same time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

from securemail.queue import Direction, Entry, NewMessage, QueueStore, State
from securemail.smime import ProtectOptions, SealedFor, protect
from tests.node.conftest import Federation, deliver_to_smtp_store, mailbox_files, running
from tests.node.test_inbound_refusals import (
    AGENCY_USER,
    CITIZEN,
    encryption_certificate,
    entries,
    letter,
    send_to_peer,
    signer,
    wait_until,
)
from tests.relay.loopback import Recorder, serving

NOW = datetime.now(UTC)
COPIES = 3
BACKLOG = 9  # copies in one claim batch (the worker takes up to 16 at once)


def copies(federation: Federation, n: int) -> list[bytes]:
    """The first protected copy twice, then the same signed content protected again."""
    message = letter(AGENCY_USER, n)
    agency = signer(federation, "agency")
    provider = [encryption_certificate(federation, "provider")]
    options = ProtectOptions(sealed_for=SealedFor("provider", (CITIZEN,)))
    first = protect(message, agency, provider, now=NOW, options=options).message
    again = protect(message, agency, provider, now=NOW, options=options).message
    assert again != first
    return [first, first, again]


async def send_each(federation: Federation, messages: list[bytes]) -> list[Entry]:
    """Send each copy in its own session, the next once the last is settled (a retry)."""
    settled: list[Entry] = []
    for count, message in enumerate(messages, 1):
        reply = await send_to_peer(federation, "provider", AGENCY_USER, message)
        assert reply.startswith("2"), reply
        settled = await wait_until(partial(settled_entries, federation, count), "a verdict")
    await asyncio.sleep(0.3)  # a late second delivery would show by now
    return settled


def settled_entries(federation: Federation, count: int) -> list[Entry] | None:
    """The provider's inbound entries once ``count`` of them are final, oldest first."""
    inbound = entries(federation, "provider", Direction.INBOUND)
    done = [e for e in inbound if e.state in (State.DELIVERED, State.BOUNCED, State.QUARANTINED)]
    return done if len(done) == count else None


def assert_one_delivery(settled: list[Entry]) -> None:
    assert [e.state for e in settled] == [State.DELIVERED] * COPIES
    replies = [e.recipients[0].last_reply or "" for e in settled]
    assert "duplicate suppressed" not in replies[0]
    assert all("duplicate suppressed" in r for r in replies[1:]), replies


def test_message_sent_twice_to_a_maildir_is_delivered_once(federation: Federation) -> None:
    """Three copies of one signed message give one file in the recipient's Maildir."""
    messages = copies(federation, 1)

    async def scenario() -> list[Entry]:
        async with running(federation, "provider"):
            return await send_each(federation, messages)

    settled = asyncio.run(scenario())
    assert_one_delivery(settled)
    delivered = mailbox_files(federation.nodes["provider"].mailbox(CITIZEN))
    assert len(delivered) == 1


def test_message_sent_twice_to_an_smtp_store_is_delivered_once(federation: Federation) -> None:
    """Three copies of one signed message reach the organisation's SMTP store once."""
    messages = copies(federation, 2)
    sink = Recorder()

    async def scenario() -> list[Entry]:
        async with serving(sink) as port:
            deliver_to_smtp_store(federation, "provider", port)
            async with running(federation, "provider"):
                return await send_each(federation, messages)

    settled = asyncio.run(scenario())
    assert_one_delivery(settled)
    assert len(sink.received) == 1
    assert sink.received[0].rcpt_tos == (CITIZEN,)
    assert b"smime=pass" in sink.received[0].content


def queue_copies(federation: Federation, messages: list[bytes]) -> None:
    """Queue the copies as the peer listener did while the workers were down (a restart)."""
    config = federation.config("provider")
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = QueueStore.open(config.database)
    try:
        for message in messages:
            new = NewMessage(
                Direction.INBOUND, "provider", AGENCY_USER, (CITIZEN,), message, client="peer"
            )
            store.enqueue(new, datetime.now(UTC))
    finally:
        store.close()


async def settle_backlog(federation: Federation, messages: list[bytes]) -> list[Entry]:
    """Start the provider on a queue holding ``messages``; its entries once all are final."""
    queue_copies(federation, messages)
    async with running(federation, "provider"):
        settled = await wait_until(partial(settled_entries, federation, len(messages)), "verdicts")
        await asyncio.sleep(0.3)  # a late second delivery would show by now
        return settled


def test_copies_claimed_together_reach_an_smtp_store_once(federation: Federation) -> None:
    """Copies queued before a restart, then worked on concurrently, reach the store once."""
    messages = copies(federation, 3) * (BACKLOG // COPIES)
    sink = Recorder()

    async def scenario() -> list[Entry]:
        async with serving(sink) as port:
            deliver_to_smtp_store(federation, "provider", port)
            return await settle_backlog(federation, messages)

    settled = asyncio.run(scenario())
    assert [e.state for e in settled] == [State.DELIVERED] * BACKLOG
    suppressed = [
        e for e in settled if "duplicate suppressed" in (e.recipients[0].last_reply or "")
    ]
    assert len(suppressed) == BACKLOG - 1
    assert len(sink.received) == 1


def test_copies_claimed_together_reach_a_maildir_once(federation: Federation) -> None:
    """Copies queued before a restart, then worked on concurrently, give one Maildir file."""
    messages = copies(federation, 4) * (BACKLOG // COPIES)
    settled = asyncio.run(settle_backlog(federation, messages))
    assert [e.state for e in settled] == [State.DELIVERED] * BACKLOG
    assert len(mailbox_files(federation.nodes["provider"].mailbox(CITIZEN))) == 1
