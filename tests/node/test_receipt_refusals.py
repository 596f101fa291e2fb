"""Bad receipts through real nodes (issue 5, "Bad input"): each is refused with its reason code.

The sender's side runs the agency node; the provider's peer port is served either by the
real provider node or by a recorder holding the provider's TLS key, which accepts every copy
and sends no receipt, so that the test makes the receipts itself with the members' real
keys (as the provider's gateway would, or a compromised one). Receipts go, wrapped in a
signed and encrypted receipt message, straight to the agency's peer listener. A refused
receipt is quarantined with its code; a late or duplicate one is consumed with an event;
the tracking state stays as it was and the original sender gets no extra MDN.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from securemail.demo.exchange import Script, submit
from securemail.evidence import Evidence, receipt_message
from securemail.evidence.message import entity, frame_parts, message_header
from securemail.queue import (
    Direction,
    Entry,
    QueueStore,
    ReceiptRecord,
    ReceiptState,
    State,
)
from securemail.queue.model import FINAL_STATES
from securemail.smime import (
    ProtectOptions,
    ReceiptRequest,
    SealedFor,
    make_receipt,
    protect,
    receipt_entity,
)
from securemail.smime.verify import Signature, verify_signed_data
from tests.node.conftest import Federation, mailbox_files, running
from tests.node.test_inbound_refusals import (
    AGENCY_USER,
    CITIZEN,
    encryption_certificate,
    letter,
    send_to_peer,
    signer,
    wait_until,
)
from tests.node.test_receipts import NOW, reports, script, set_window, with_receipt
from tests.relay.loopback import Recorder, serving

RECEIPTS = "securemail-receipts@agency.govt.nz"  # the agency's ESS receiptsTo
DOMAINS = {"agency": "agency.govt.nz", "provider": "securemail.provider.nz", "gsp": "gsp.co.nz"}
SETTLED = (*FINAL_STATES, State.DEFERRED)  # an attempt was made
MDN = b"report-type=disposition-notification"


@dataclass(frozen=True)
class Original:
    """A receipt-requesting message the agency relayed, as it kept the signature."""

    message_id: str
    content_identifier: str
    signature: Signature
    content: bytes


def store(federation: Federation, node: str = "agency") -> QueueStore:
    return QueueStore.open(federation.config(node).database)


def original(federation: Federation, message_id: str) -> Original | None:
    with store(federation) as queue:
        for entry in queue.entries_by_message_id(message_id):
            for sent in queue.signatures_for(entry.id):
                content, signature = verify_signed_data(sent.signed_data)
                return Original(message_id, sent.content_identifier, signature, content)
    return None


def records(federation: Federation, *originals: Original) -> list[ReceiptRecord]:
    with store(federation) as queue:
        return [r for o in originals for r in queue.receipt_records(o.message_id)]


def states(federation: Federation, *originals: Original) -> list[ReceiptState]:
    return [r.state for r in records(federation, *originals)]


def evidence_for(
    sent: Original, *, content_identifier: str | None = None, recipient: str = CITIZEN
) -> Evidence:
    return Evidence(
        original_message_id=sent.message_id,
        content_digest="sha256:" + hashlib.sha256(sent.content).hexdigest(),
        content_identifier=content_identifier or sent.content_identifier,
        recipient=recipient,
        delivered_at=NOW,
        receiving_org="provider",
        receiving_gateway="provider.demo.securemail.test",
    )


def wrap(federation: Federation, message: bytes, org: str = "provider") -> bytes:
    """``message`` signed by ``org`` and encrypted to the agency, as a gateway sends it."""
    agency = encryption_certificate(federation, "agency")
    options = ProtectOptions(sealed_for=SealedFor("agency", (RECEIPTS,)))
    return protect(message, signer(federation, org), [agency], now=NOW, options=options).message


def receipt_mail(
    federation: Federation, receipt: bytes, evidence: Evidence, org: str = "provider"
) -> bytes:
    domain = DOMAINS[org]
    message = receipt_message(
        receipt_der=receipt,
        evidence=evidence,
        sender=f"postmaster@{domain}",
        to=RECEIPTS,
        now=NOW,
        message_id_domain=domain,
    )
    return wrap(federation, message, org)


def genuine(federation: Federation, sent: Original, org: str = "provider") -> bytes:
    """The ESS receipt ``org``'s gateway makes for ``sent`` (RFC 2634 §2)."""
    return make_receipt(sent.signature, signer(federation, org), now=NOW)


def message_id_of(message: bytes) -> str:
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")


def settled(federation: Federation, message_id: str, node: str = "agency") -> Entry | None:
    with store(federation, node) as queue:
        done = [e for e in queue.entries_by_message_id(message_id) if e.state in SETTLED]
    return done[0] if done else None


def history(federation: Federation, entry_id: str, node: str = "agency") -> list[str]:
    """The entry's events as "event reason detail" lines."""
    with store(federation, node) as queue:
        return [f"{e.event} {e.reason} {e.detail}" for e in queue.events(entry_id)]


@contextlib.asynccontextmanager
async def silent_provider(federation: Federation) -> AsyncIterator[Recorder]:
    """The provider's peer port served by a recorder with the provider's real TLS key: it
    accepts every copy and never sends a receipt."""
    root, handler = federation.root, Recorder()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    passphrase = (root / "passphrase.txt").read_text().strip()
    keys = (root / "provider" / "certs" / "tls.pem", root / "provider" / "keys" / "tls.key")
    context.load_cert_chain(*keys, password=passphrase)
    async with serving(handler, tls=context, port=federation.nodes["provider"].peer_port):
        yield handler


async def send_awaited(federation: Federation, n: int) -> Original:
    """Submit message ``n`` asking for a receipt; its signature once the agency relayed it."""
    message = script(CITIZEN)
    reply = await submit(federation.nodes["agency"], message, with_receipt(message.message(n, NOW)))
    assert reply.startswith("250"), reply
    mid = Script.message_id(n, DOMAINS["agency"])
    return await wait_until(lambda: original(federation, mid), f"message {n} relayed")


async def send_receipt(federation: Federation, mail: bytes) -> Entry:
    """Send a receipt message to the agency's peer listener; its entry once settled."""
    reply = await send_to_peer(federation, "agency", "", mail, to=RECEIPTS)
    assert reply.startswith("2"), reply
    mid = message_id_of(mail)
    return await wait_until(lambda: settled(federation, mid), "the receipt's verdict")


def assert_quarantined(entry: Entry, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    assert (entry.state, entry.reason) == (State.QUARANTINED, reason)
    assert f"quarantined {entry.id}: {reason}:" in caplog.text


def test_receipt_replayed_onto_another_message_is_a_mismatch(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """A's genuine receipt presented as B's is refused (receipt-mismatch); A's still counts."""

    async def scenario() -> None:
        async with silent_provider(federation), running(federation, "agency"):
            a, b = await send_awaited(federation, 1), await send_awaited(federation, 2)
            replayed = receipt_mail(
                federation,
                genuine(federation, a),
                evidence_for(a, content_identifier=b.content_identifier),
            )
            assert_quarantined(await send_receipt(federation, replayed), "receipt-mismatch", caplog)
            assert states(federation, a, b) == [ReceiptState.AWAITING] * 2
            assert not reports(federation, MDN)
            accepted = await send_receipt(
                federation, receipt_mail(federation, genuine(federation, a), evidence_for(a))
            )
            assert accepted.state is State.DELIVERED
            assert states(federation, a, b) == [ReceiptState.RECEIPTED, ReceiptState.AWAITING]
            await wait_until(lambda: reports(federation, MDN) or None, "A's MDN")

    asyncio.run(scenario())
    assert len(reports(federation, MDN)) == 1


@pytest.mark.parametrize("wrapper", ["gsp", "provider"], ids=["sent-by-gsp", "sent-by-provider"])
def test_receipt_signed_by_another_gateway_is_refused(
    federation: Federation, caplog: pytest.LogCaptureFixture, wrapper: str
) -> None:
    """A receipt signed by gsp for a copy sent to the provider is refused: wrong signer,
    whether gsp sends it itself or the provider's gateway passes it on."""

    async def scenario() -> None:
        async with silent_provider(federation), running(federation, "agency"):
            sent = await send_awaited(federation, 3)
            forged = receipt_mail(
                federation, genuine(federation, sent, "gsp"), evidence_for(sent), wrapper
            )
            assert_quarantined(
                await send_receipt(federation, forged), "receipt-wrong-signer", caplog
            )
            assert states(federation, sent) == [ReceiptState.AWAITING]

    asyncio.run(scenario())
    assert not reports(federation, MDN)


def test_receipt_for_a_message_we_never_sent_is_unknown(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown content identifier, or a recipient the copy never went to: receipt-unknown."""

    async def scenario() -> None:
        async with silent_provider(federation), running(federation, "agency"):
            sent = await send_awaited(federation, 4)
            receipt = genuine(federation, sent)
            stranger = evidence_for(sent, content_identifier=os.urandom(16).hex())
            other = evidence_for(sent, recipient="mere.tane@securemail.provider.nz")
            for evidence in (stranger, other):
                entry = await send_receipt(federation, receipt_mail(federation, receipt, evidence))
                assert_quarantined(entry, "receipt-unknown", caplog)
            assert states(federation, sent) == [ReceiptState.AWAITING]

    asyncio.run(scenario())
    assert not reports(federation, MDN)


def test_receipt_after_the_window_expired_is_late(federation: Federation) -> None:
    """A genuine receipt after the expiry notice changes nothing: receipt-late, no MDN."""
    set_window(federation, "agency", "1s")

    async def scenario() -> tuple[Original, Entry]:
        async with silent_provider(federation), running(federation, "agency"):
            sent = await send_awaited(federation, 5)
            await wait_until(lambda: reports(federation, b"receipt-expired") or None, "expiry")
            mail = receipt_mail(federation, genuine(federation, sent), evidence_for(sent))
            entry = await send_receipt(federation, mail)
            await asyncio.sleep(0.5)  # an MDN would be queued in the receipt's commit
            return sent, entry

    sent, entry = asyncio.run(scenario())
    assert entry.state is State.DELIVERED
    assert any(line.startswith("receipt-late") for line in history(federation, entry.id))
    [record] = records(federation, sent)
    assert (record.state, record.receipt, record.receipted_at) == (ReceiptState.EXPIRED, None, None)
    assert any(line.startswith("receipt-late") for line in history(federation, record.entry_id))
    assert len(reports(federation, b"receipt-expired")) == 1
    assert not reports(federation, MDN)


def test_duplicate_of_a_real_receipt_changes_nothing(federation: Federation) -> None:
    """The provider's real receipt sent a second time is consumed as a duplicate: one MDN."""
    message = script(CITIZEN)
    mid = Script.message_id(6, DOMAINS["agency"])

    async def scenario() -> tuple[ReceiptRecord, Entry]:
        async with running(federation, "agency", "provider"):
            await submit(federation.nodes["agency"], message, with_receipt(message.message(6, NOW)))
            await wait_until(lambda: reports(federation, MDN) or None, "the MDN")
            sent = original(federation, mid)
            assert sent is not None
            [first] = records(federation, sent)
            assert first.receipt is not None and first.evidence is not None
            evidence = Evidence.from_json(first.evidence.encode())
            entry = await send_receipt(
                federation, receipt_mail(federation, first.receipt, evidence)
            )
            await asyncio.sleep(0.5)  # a second MDN would be queued by now
            return first, entry

    first, entry = asyncio.run(scenario())
    assert entry.state is State.DELIVERED
    assert any(line.startswith("receipt-duplicate") for line in history(federation, entry.id))
    with store(federation) as queue:
        assert queue.receipt_records(mid) == [first]
    assert len(reports(federation, MDN)) == 1


def receipt_kind(parts: list[bytes], *, body: bytes | None = None) -> bytes:
    """A message marked as a receipt whose multipart body holds ``parts`` (or is ``body``)."""
    boundary, framed = frame_parts(parts)
    header = message_header(
        from_field="postmaster@securemail.provider.nz",
        to=RECEIPTS,
        subject="SecureMail delivery receipt",
        now=NOW,
        message_id_domain=DOMAINS["provider"],
        content_type=f'multipart/mixed; boundary="{boundary}"',
        extra=(("X-SecureMail-Kind", "signed-receipt"),),
    )
    return header + (framed if body is None else body)


def malformed(receipt: bytes, evidence: Evidence) -> dict[str, tuple[bytes, str]]:
    """Receipt messages that must not be taken, each with the reason code it must get."""
    text = entity("text/plain", b"A receipt.\r\n")
    part, document = receipt_entity(receipt), entity("application/json", evidence.to_json())
    spaced = evidence.to_json().replace(b",", b", ")
    huge = entity("text/plain", (b"x" * 100 + b"\r\n") * 2700)  # 275 kB, over 256 KiB
    return {
        "no JSON part": (receipt_kind([text, part]), "receipt-malformed"),
        "two receipts": (receipt_kind([text, part, part, document]), "receipt-malformed"),
        "garbage": (receipt_kind([], body=os.urandom(600).hex().encode()), "receipt-malformed"),
        "not DER": (
            receipt_kind([receipt_entity(b"\x01" + receipt[1:]), document]),
            "receipt-malformed",
        ),
        "evidence not canonical": (
            receipt_kind([part, entity("application/json", spaced)]),
            "evidence-malformed",
        ),
        "oversized message": (receipt_kind([huge, part, document]), "receipt-too-large"),
        "oversized receipt": (
            receipt_kind([receipt_entity(b"\x30" + os.urandom(70_000)), document]),
            "receipt-too-large",
        ),
    }


def test_malformed_and_oversized_receipts_are_quarantined(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """Each malformed or oversized receipt message gets the evidence module's code."""

    async def scenario() -> dict[str, tuple[Entry, str]]:
        async with silent_provider(federation), running(federation, "agency"):
            sent = await send_awaited(federation, 7)
            cases = malformed(genuine(federation, sent), evidence_for(sent))
            found = {}
            for name, (message, reason) in cases.items():
                found[name] = (await send_receipt(federation, wrap(federation, message)), reason)
            assert states(federation, sent) == [ReceiptState.AWAITING]
            return found

    for name, (entry, reason) in asyncio.run(scenario()).items():
        assert (name, entry.state, entry.reason) == (name, State.QUARANTINED, reason)
        assert f"quarantined {entry.id}: {reason}:" in caplog.text
    assert not reports(federation, MDN)


def protected(federation: Federation, message: bytes, receipts_to: str) -> bytes:
    """``message`` signed by the agency asking for a receipt to ``receipts_to``, encrypted
    to the provider."""
    return protect(
        message,
        signer(federation, "agency"),
        [encryption_certificate(federation, "provider")],
        now=NOW,
        options=ProtectOptions(
            receipt_request=ReceiptRequest(os.urandom(16), (receipts_to,)),
            sealed_for=SealedFor("provider", (CITIZEN,)),
        ),
    ).message


async def deliver_at_provider(federation: Federation, message: bytes) -> Entry:
    reply = await send_to_peer(federation, "provider", AGENCY_USER, message)
    assert reply.startswith("2"), reply
    mid = message_id_of(message)
    entry = await wait_until(lambda: settled(federation, mid, "provider"), "a verdict")
    await asyncio.sleep(0.3)  # a receipt would be queued in the delivery's commit
    return entry


def provider_outbound(federation: Federation) -> list[Entry]:
    with store(federation, "provider") as queue:
        return list(queue.list(direction=Direction.OUTBOUND))


@pytest.mark.parametrize(
    ("receipts_to", "why"),
    [
        ("x@securemail.provider.nz", "hostile-receipts-to"),
        ("ops@gsp.co.nz", "hostile-receipts-to"),
        ("a b@agency.govt.nz", "bad-receipts-to"),
    ],
    ids=["provider", "gsp", "space-in-address"],
)
def test_hostile_receipts_to_gets_no_receipt(
    federation: Federation, receipts_to: str, why: str
) -> None:
    """A receiptsTo outside the sender's organisation, or not an address: the message is
    delivered once, no receipt is sent, and the history says why."""

    async def scenario() -> Entry:
        async with running(federation, "provider"):
            return await deliver_at_provider(
                federation, protected(federation, letter(AGENCY_USER, 8), receipts_to)
            )

    entry = asyncio.run(scenario())
    assert entry.state is State.DELIVERED
    assert len(mailbox_files(federation.nodes["provider"].mailbox(CITIZEN))) == 1
    assert provider_outbound(federation) == []
    lines = history(federation, entry.id, "provider")
    assert any(line.startswith("receipt-refused") and why in line for line in lines), lines


def report(n: int) -> bytes:
    """A delivery status notification (RFC 3464) from the agency to the citizen."""
    return (
        f"From: {AGENCY_USER}\r\n"
        f"To: {CITIZEN}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <report-{n}@agency.govt.nz>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n'
        "\r\n"
        "--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; agency.govt.nz\r\n\r\n"
        "Final-Recipient: rfc822; nobody@agency.govt.nz\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--r--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("message", "receipts"),
    [
        (letter(AGENCY_USER, 9), 1),
        (report(9), 0),
        (letter(AGENCY_USER, 9, extra="X-SecureMail-Kind: signed-receipt\r\n"), 0),
    ],
    ids=["plain-letter-control", "multipart-report", "receipt-message"],
)
def test_never_a_receipt_for_a_receipt_or_a_report(
    federation: Federation, message: bytes, receipts: int
) -> None:
    """A report or a receipt that asks for a receipt is delivered and gets none."""
    mail = protected(federation, message, RECEIPTS)

    async def scenario() -> Entry:
        async with running(federation, "provider"):
            return await deliver_at_provider(federation, mail)

    entry = asyncio.run(scenario())
    assert entry.state is State.DELIVERED
    issued = [
        line for line in history(federation, entry.id, "provider") if "receipt-issued" in line
    ]
    assert len(issued) == receipts
    assert len(provider_outbound(federation)) == receipts


def test_ordinary_mail_to_the_receipt_address_never_reaches_a_mailbox(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """Mail to the receipt address that is not a receipt is quarantined, not delivered."""
    caplog.set_level(logging.WARNING, logger="securemail.unprotect")
    mail = wrap(federation, letter("hemi.walker@securemail.provider.nz", 41))

    async def scenario() -> Entry:
        async with running(federation, "agency"):
            return await send_receipt(federation, mail)

    entry = asyncio.run(scenario())
    assert_quarantined(entry, "receipt-wrong-kind", caplog)
    agency_mail = federation.nodes["agency"].mail
    assert not any(agency_mail.rglob("securemail-receipts*"))


def test_receipt_whose_evidence_disagrees_with_our_records_is_refused(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """A genuine ESS receipt with a false digest, Message-ID or member in its evidence is
    refused (receipt-evidence-mismatch); the true one's MDN carries only our own values."""
    false_digest = "sha256:" + "1" * 64

    async def scenario() -> None:
        async with silent_provider(federation), running(federation, "agency"):
            sent = await send_awaited(federation, 9)
            true = evidence_for(sent)
            for lie in (
                dataclasses.replace(true, content_digest=false_digest),
                dataclasses.replace(true, original_message_id="<other@agency.govt.nz>"),
                dataclasses.replace(true, receiving_org="gsp"),
            ):
                forged = receipt_mail(federation, genuine(federation, sent), lie)
                entry = await send_receipt(federation, forged)
                assert_quarantined(entry, "receipt-evidence-mismatch", caplog)
                assert states(federation, sent) == [ReceiptState.AWAITING]
            claimed = dataclasses.replace(true, receiving_gateway="phish.example")
            mail = receipt_mail(federation, genuine(federation, sent), claimed)
            assert (await send_receipt(federation, mail)).state is State.DELIVERED
            await wait_until(lambda: reports(federation, MDN) or None, "the MDN")

    asyncio.run(scenario())
    [mdn] = reports(federation, MDN)
    assert false_digest.encode() not in mdn
    assert b"phish.example" not in mdn
    assert b"X-SecureMail-Content-Digest: sha256:" in mdn
