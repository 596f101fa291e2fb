"""End to end on loopback: real nodes, real SMTP, real S/MIME, real queues and Maildirs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiosmtplib

from securemail.demo.exchange import Script, find_delivered, header, submit, wait_for
from securemail.queue import Direction, QueueStore, State
from tests.node.conftest import WAIT, Federation, mailbox_files, retry_now, running

NOW = datetime.now(UTC)
TO_CITIZEN = Script(
    "agency to citizen",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "[IN-CONFIDENCE] Your benefit review",
)


def entries(federation: Federation, node: str, direction: Direction) -> list[object]:
    store = QueueStore.open(federation.config(node).database)
    try:
        return list(store.list(direction=direction))
    finally:
        store.close()


def test_member_to_member_arrives_verified_with_subject_restored(federation: Federation) -> None:
    """Mail from the agency reaches the citizen's Maildir verified, Subject and body intact."""

    async def scenario() -> bytes | None:
        async with running(federation, "agency", "provider"):
            reply = await submit(federation.nodes["agency"], TO_CITIZEN, TO_CITIZEN.message(1, NOW))
            assert reply.startswith("250"), reply
            mailbox = federation.nodes["provider"].mailbox(TO_CITIZEN.to[0])
            return await wait_for(mailbox, Script.message_id(1, "agency.govt.nz"), WAIT)

    delivered = asyncio.run(scenario())
    assert delivered is not None
    assert header(delivered, "Subject") == TO_CITIZEN.subject
    assert "verified" in header(delivered, "X-SecureMail-Status")
    assert "smime=pass" in header(delivered, "Authentication-Results")
    body = TO_CITIZEN.message(1, NOW).split(b"\r\n\r\n", 1)[1]
    assert delivered.replace(b"\r\n", b"\n").endswith(body.replace(b"\r\n", b"\n"))
    assert b"application/pkcs7-mime" not in delivered


def test_gateway_service_provider_serves_two_organisations(federation: Federation) -> None:
    """A business hosted on the GSP node sends and receives with its own keys."""
    outbound = Script(
        "business to agency",
        "gsp",
        "accounts@harbourbuilders.co.nz",
        ("aroha.ngata@agency.govt.nz",),
        "Invoice",
    )
    inbound = Script(
        "agency to business",
        "agency",
        "procurement@agency.govt.nz",
        ("accounts@harbourbuilders.co.nz",),
        "Re: Invoice",
    )

    async def scenario() -> tuple[bytes | None, bytes | None]:
        async with running(federation, "agency", "gsp"):
            await submit(federation.nodes["gsp"], outbound, outbound.message(1, NOW))
            await submit(federation.nodes["agency"], inbound, inbound.message(2, NOW))
            first = await wait_for(
                federation.nodes["agency"].mailbox("aroha.ngata@agency.govt.nz"),
                Script.message_id(1, "harbourbuilders.co.nz"),
                WAIT,
            )
            second = await wait_for(
                federation.nodes["gsp"].mailbox("accounts@harbourbuilders.co.nz"),
                Script.message_id(2, "agency.govt.nz"),
                WAIT,
            )
            return first, second

    first, second = asyncio.run(scenario())
    assert first is not None and "signer=harbour" in header(first, "X-SecureMail-Status")
    assert second is not None and "signer=agency" in header(second, "X-SecureMail-Status")


def test_peer_down_then_back_is_delivered_once(federation: Federation) -> None:
    """With the receiving gateway down the entry waits (deferred); once back, one delivery."""

    async def scenario() -> tuple[object, int]:
        async with running(federation, "agency") as nodes:
            await submit(federation.nodes["agency"], TO_CITIZEN, TO_CITIZEN.message(3, NOW))
            deferred = await _wait_state(federation, "agency", State.DEFERRED)
            await nodes.start("provider")
            retry_now(federation, "agency", deferred)
            mailbox = federation.nodes["provider"].mailbox(TO_CITIZEN.to[0])
            found = await wait_for(mailbox, Script.message_id(3, "agency.govt.nz"), WAIT)
            assert found is not None
            await asyncio.sleep(0.5)
            return deferred, len(mailbox_files(mailbox))

    _, count = asyncio.run(scenario())
    assert count == 1


async def _wait_state(federation: Federation, node: str, state: State) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        for entry in entries(federation, node, Direction.OUTBOUND):
            if entry.state is state:  # type: ignore[attr-defined]
                return entry.id  # type: ignore[attr-defined,no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {state} entry on {node}")


def test_forged_from_is_bounced_with_a_notice_and_not_sent(federation: Federation) -> None:
    """A user may not send as another member's domain: bounced, sender told why."""
    forged = Script(
        "forged",
        "provider",
        "hemi.walker@securemail.provider.nz",
        ("aroha.ngata@agency.govt.nz",),
        "Change of bank account",
        author="minister@agency.govt.nz",
    )

    async def scenario() -> tuple[bytes | None, bytes | None]:
        async with running(federation, "agency", "provider"):
            await submit(federation.nodes["provider"], forged, forged.message(4, NOW))
            sender_box = federation.nodes["provider"].mailbox(forged.mail_from)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            notice = None
            while notice is None and loop.time() < deadline:
                await asyncio.sleep(0.1)
                if (sender_box / "new").is_dir():
                    notice = next((p.read_bytes() for p in (sender_box / "new").iterdir()), None)
            target = federation.nodes["agency"].mailbox(forged.to[0])
            leaked = find_delivered(target, Script.message_id(4, "agency.govt.nz"))
            return notice, leaked

    notice, leaked = asyncio.run(scenario())
    assert leaked is None
    assert notice is not None
    assert b"from-not-authorised" in notice
    assert b"This is demo message 4" not in notice


def test_non_member_without_smarthost_is_refused_at_rcpt(federation: Federation) -> None:
    """The relay listener is not an open relay: a non-member recipient gets 550 5.7.1."""

    async def scenario() -> str:
        async with running(federation, "agency"):
            try:
                await aiosmtplib.send(
                    b"From: aroha.ngata@agency.govt.nz\r\n\r\nhi\r\n",
                    sender="aroha.ngata@agency.govt.nz",
                    recipients=["x@example.com"],
                    hostname="127.0.0.1",
                    port=federation.nodes["agency"].relay_port,
                    start_tls=False,
                )
            except aiosmtplib.SMTPRecipientsRefused as refused:
                first = refused.recipients[0]
                return f"{first.code} {first.message}"
            return "accepted"

    assert asyncio.run(scenario()).startswith("550 5.7.1")
