"""A gateway built by another vendor (OpenSSL's CLI, Postfix and swaks) and a SecureMail node.

The foreign gateway (tests/support/foreign_peer.py) made its own keys and CSRs with
``openssl req`` and was admitted with ``securemail federation add-member --csr --tls-csr``;
no SecureMail code is in its message path. Both sides run with default settings: the
foreign member has the default capabilities, the agency's node its demo configuration.
Blocking harness calls run in threads so the node in the test's event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from securemail.demo.exchange import Script, header, submit, wait_for
from securemail.demo.federation import free_port
from securemail.queue import Direction, QueueStore, ReceiptState, State
from tests.conftest import require_tool
from tests.node.conftest import WAIT, Federation, running
from tests.support import foreign_peer as fp
from tests.support.postfix import PostfixInstance, start_postfix

NOW = datetime.now(UTC)
OFFICER = f"officer@{fp.DOMAIN}"
AROHA = "aroha.ngata@agency.govt.nz"
KEYS = "foreign-gateway"  # the foreign gateway's folder in the federation's root
LEGACY, LEGACY_DOMAIN = "legacy-gateway", "legacy.example.nz"  # the gpgsm gateway's
T = TypeVar("T")


def _need(*tools: str) -> None:
    """Skip (fail under SECUREMAIL_REQUIRE_ALL=1) without the tools, or without root."""
    for tool in tools:
        require_tool(tool)
    if os.geteuid() != 0:
        reason = "a private Postfix instance needs root (its master process does)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def foreign_port() -> int:
    """The port the foreign gateway's Postfix listens on (its directory endpoint)."""
    return free_port()


@pytest.fixture(scope="module")
def legacy_port() -> int:
    """The port of the legacy (gpgsm) gateway's Postfix."""
    return free_port()


@pytest.fixture(scope="module")
def founded(founded: Federation, foreign_port: int, legacy_port: int) -> Federation:
    """The demo federation with the foreign gateway admitted from its CSRs and published, and
    a legacy one whose directory entry lists AES-256-CBC only (what gpgsm can read)."""
    if os.geteuid() == 0 or os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
        fed, secret = founded.root / "federation", founded.root / "passphrase.txt"
        keys = fp.make_keys(founded.root / KEYS)
        fp.admit(keys, fed, secret, f"127.0.0.1:{foreign_port}")
        legacy = fp.make_keys(founded.root / LEGACY, org_id="legacy", domain=LEGACY_DOMAIN)
        fp.admit(legacy, fed, secret, f"127.0.0.1:{legacy_port}", capabilities=("aes256-cbc",))
    return founded


@dataclass(frozen=True)
class Foreign:
    """The foreign gateway in one test: its files, its OpenSSL, the directory it read."""

    keys: fp.ForeignKeys
    peer: fp.OpenSslPeer
    directory: fp.Directory
    port: int  # its Postfix's port, as its directory endpoint says

    def agency_certificate(self, use: str = "encryption") -> Path:
        return fp.certificate_of(self.keys, self.directory, "agency.govt.nz", use)


@pytest.fixture
def foreign(federation: Federation, foreign_port: int, tmp_path: Path) -> Foreign:
    """The foreign gateway, having read the directory (its signature checked with openssl)."""
    _need("openssl", "postfix", "swaks")
    keys = fp.ForeignKeys(federation.root / KEYS)
    directory = fp.read_directory(keys, federation.root / "federation" / "directory.json")
    return Foreign(keys, fp.OpenSslPeer(keys, tmp_path / "peer-work"), directory, foreign_port)


@contextlib.asynccontextmanager
async def foreign_postfix(
    tmp: Path, foreign: Foreign, keys: fp.ForeignKeys | None = None, port: int = 0
) -> AsyncIterator[PostfixInstance]:
    """A foreign gateway's Postfix (``foreign``'s unless ``keys`` and ``port`` name another):
    its domain's store, STARTTLS with its federation key."""
    keys = keys or foreign.keys
    manager = start_postfix(
        tmp,
        domain=keys.domain,
        mailbox_dir=tmp / f"{keys.org_id}-mail",
        mailboxes=fp.MAILBOXES,
        port=port or foreign.port,
        settings=fp.postfix_settings(keys),
    )
    instance = await asyncio.to_thread(manager.__enter__)
    try:
        yield instance
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def stored(instance: PostfixInstance, local: str, count: int = 1) -> list[bytes]:
    """The first ``count`` messages Postfix stored for ``local``, waiting up to WAIT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        found = instance.delivered(local)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing for {local}@{instance.domain}\n{instance.log_tail()}")


async def thread(call: Callable[..., T], *args: object) -> T:
    return await asyncio.to_thread(call, *args)


def receipt_state(federation: Federation, message_id: str) -> list[ReceiptState]:
    store = QueueStore.open(federation.config("agency").database)
    try:
        return [record.state for record in store.receipt_records(message_id)]
    finally:
        store.close()


def quarantined(federation: Federation) -> list[str]:
    """The reason codes of the agency's quarantined inbound entries."""
    store = QueueStore.open(federation.config("agency").database)
    try:
        entries = store.list(direction=Direction.INBOUND, states=[State.QUARANTINED])
        return [e.reason or "" for e in entries]
    finally:
        store.close()


def verified_evidence(federation: Federation, message_id: str) -> str:
    """The agency's "verified" event for the inbound entry with ``message_id``."""
    store = QueueStore.open(federation.config("agency").database)
    try:
        [entry] = store.entries_by_message_id(message_id)
        return " ".join(e.detail or "" for e in store.events(entry.id) if e.event == "verified")
    finally:
        store.close()


async def wait_until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {WAIT} s: {what}")


def foreign_message(n: int, author: str = OFFICER, to: str = AROHA) -> tuple[str, bytes]:
    """(Message-ID, message) of a plain text message the foreign organisation writes."""
    message_id = f"<foreign-{n}@{fp.DOMAIN}>"
    lines = [
        f"From: {author}",
        f"To: {to}",
        "Subject: [IN-CONFIDENCE] Figures from the foreign gateway",
        f"Date: {NOW.strftime('%a, %d %b %Y %H:%M:%S +0000')}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"Message {n}, signed and encrypted with openssl cms, sent with swaks.",
    ]
    return message_id, ("\r\n".join(lines) + "\r\n").encode()


def test_our_node_to_openssl_peer_and_its_receipt_back(
    federation: Federation, foreign: Foreign, tmp_path: Path
) -> None:
    """SM-TLS-1/2, SM-DIR-4, SM-SEND-1/2/3/5/6, SM-RCPT-4: our default message reaches the
    foreign Postfix over pinned STARTTLS, `openssl cms -decrypt` and `-verify` (anchor and CRL)
    open it, and the receipt `openssl cms -sign_receipt` made, sent back with swaks, marks it
    receipted at our node."""
    agency = federation.nodes["agency"]
    script = Script("to a foreign gateway", "agency", AROHA, (OFFICER,), "Budget", receipt=True)
    message = script.message(1, NOW)
    message_id = Script.message_id(1, "agency.govt.nz")

    async def scenario() -> tuple[fp.Opened, str]:
        async with (
            running(federation, "agency"),
            foreign_postfix(tmp_path, foreign) as mta,
        ):
            assert (await submit(agency, script, message)).startswith("250")
            [wire] = await stored(mta, "officer")
            assert "TLS connection established from" in mta.log_file.read_text()
            opened = await thread(foreign.peer.open, wire)
            to = fp.receipts_to(opened.receipt_request)
            evidence = fp.evidence_json(
                original=opened.content,
                identifier=fp.content_identifier(opened.receipt_request),
                recipient=OFFICER,
                delivered_at=fp.now(),
            )
            receipt = await thread(foreign.peer.sign_receipt, opened.inner)
            signed = await thread(
                foreign.peer.sign,
                fp.receipt_message(
                    receipt_der=receipt, evidence=evidence, sender=f"postmaster@{fp.DOMAIN}",
                    to=to, now=fp.now(),
                ),
            )  # fmt: skip
            agency_cert = foreign.agency_certificate()
            header_fields = fp.wire_header(f"postmaster@{fp.DOMAIN}", to, "<r1@x>", fp.now())
            outer = await thread(foreign.peer.encrypt, signed, agency_cert, header_fields)
            sent = await thread(fp.swaks, agency.peer_port, f"postmaster@{fp.DOMAIN}", to, outer)
            assert "<~  250 " in sent, sent
            await wait_until(
                lambda: receipt_state(federation, message_id) == [ReceiptState.RECEIPTED],
                "the agency marks the message receipted",
            )
            return opened, wire.decode(errors="replace")

    opened, wire = asyncio.run(scenario())
    assert "smime-type=authenveloped-data" in wire.lower()  # AES-GCM: the directory default
    assert "Subject: SecureMail message" in wire and "Budget" not in wire
    assert opened.inner.lower().count(b"content-transfer-encoding: base64") == 1
    assert opened.content.endswith(message.split(b"\r\n\r\n", 1)[1])
    assert b"Subject: Budget" in opened.content


def test_openssl_peer_to_our_node_and_our_receipt_back(
    federation: Federation, foreign: Foreign, tmp_path: Path
) -> None:
    """SM-TLS-3, SM-RECV-1/4/5/7, SM-RCPT-1/2/3: our node's STARTTLS key matches its pin
    (`openssl s_client`); `openssl cms -sign -receipt_request_to` then `-encrypt` (AES-256-GCM,
    RSA-OAEP), sent with swaks over STARTTLS, is delivered verified; our signed receipt comes
    back to the foreign Postfix and passes `openssl cms -verify_receipt`."""
    agency = federation.nodes["agency"]
    message_id, message = foreign_message(1)
    signed = foreign.peer.sign(message, receipts_to=f"securemail-receipts@{fp.DOMAIN}")
    agency_cert = foreign.agency_certificate()
    wire = foreign.peer.encrypt(
        signed, agency_cert, fp.wire_header(OFFICER, AROHA, message_id, NOW)
    )

    async def scenario() -> tuple[bytes | None, fp.Opened]:
        async with (
            running(federation, "agency"),
            foreign_postfix(tmp_path, foreign) as mta,
        ):
            pin = await thread(fp.served_pin, foreign.keys, agency.peer_port)
            assert pin in foreign.directory.member_for("agency.govt.nz")["tls_pins"]  # type: ignore[operator]
            sent = await thread(fp.swaks, agency.peer_port, OFFICER, AROHA, wire)
            assert "<~  250 " in sent, sent
            delivered = await wait_for(agency.mailbox(AROHA), message_id, WAIT)
            [receipt_mail] = await stored(mta, "securemail-receipts")
            return delivered, await thread(foreign.peer.open, receipt_mail)

    delivered, receipt_mail = asyncio.run(scenario())
    assert delivered is not None
    status = header(delivered, "X-SecureMail-Status")
    assert "verified" in status and "signer=foreign" in status, status
    body = message.split(b"\r\n\r\n", 1)[1]
    assert delivered.replace(b"\r\n", b"\n").endswith(body.replace(b"\r\n", b"\n"))
    assert header(delivered, "Subject") == "[IN-CONFIDENCE] Figures from the foreign gateway"
    # The receipt message is signed by the agency's gateway, as the directory lists it.
    agency_signing = foreign.agency_certificate("signing")
    assert receipt_mail.signer == agency_signing.read_bytes()
    assert header(receipt_mail.content, "X-SecureMail-Kind") == "signed-receipt"
    part = fp.part_of_type(receipt_mail.content, "application/pkcs7-mime")
    assert part.get_param("smime-type") == "signed-receipt"
    foreign.peer.verify_receipt(part.get_content(), signed)  # raises unless OpenSSL accepts it
    evidence = json.loads(fp.part_of_type(receipt_mail.content, "application/json").get_content())
    assert (evidence["recipient"], evidence["original_message_id"]) == (AROHA, message_id)
    assert evidence["content_digest"] == "sha256:" + hashlib.sha256(message).hexdigest()


def test_from_not_owned_by_the_foreign_signer_is_refused_with_a_signed_notice(
    federation: Federation, foreign: Foreign, tmp_path: Path
) -> None:
    """SM-RECV-6, SM-FAIL-1/2/3: the foreign signer writing From: an agency address is refused
    (from-not-authorised), nothing is delivered, and the foreign Postfix gets our signed
    RFC 3464 notice naming the reason, which `openssl cms` decrypts and verifies."""
    agency = federation.nodes["agency"]
    message_id, message = foreign_message(2, author="minister@agency.govt.nz")
    signed = foreign.peer.sign(message)
    agency_cert = foreign.agency_certificate()
    wire = foreign.peer.encrypt(
        signed, agency_cert, fp.wire_header(OFFICER, AROHA, message_id, NOW)
    )

    async def scenario() -> fp.Opened:
        async with (
            running(federation, "agency"),
            foreign_postfix(tmp_path, foreign) as mta,
        ):
            sent = await thread(fp.swaks, agency.peer_port, OFFICER, AROHA, wire)
            assert "<~  250 " in sent, sent  # accepted into the queue, refused when opened
            [notice] = await stored(mta, "officer")
            return await thread(foreign.peer.open, notice)

    notice = asyncio.run(scenario())
    assert quarantined(federation) == ["from-not-authorised"]
    assert not (agency.mailbox(AROHA) / "new").is_dir() or not any(
        (agency.mailbox(AROHA) / "new").iterdir()
    )
    assert b"report-type=delivery-status" in notice.content
    status = notice.content.split(b"Content-Type: message/delivery-status", 1)[1]
    for field in (b"X-SecureMail-Reason: from-not-authorised", b"Action: failed", b"5.7.0"):
        assert field in status, status
    assert b"Message 2, signed" not in notice.content  # never the refused body


def test_gpgsm_peer_to_our_node(federation: Federation, foreign: Foreign, tmp_path: Path) -> None:
    """SM-RECV-1/4/5: the same foreign keys in gpgsm (opaque BER SignedData, then AES-256-CBC
    with RSA PKCS#1 v1.5, as gpgsm 2.2 can), sent with swaks over STARTTLS, is delivered
    verified and signed by the foreign member."""
    require_tool("gpgsm")
    agency = federation.nodes["agency"]
    message_id, message = foreign_message(3)
    gpgsm = fp.GpgsmPeer(foreign.keys, tmp_path / "gnupg")
    try:
        agency_cert = foreign.agency_certificate()
        header_fields = fp.wire_header(OFFICER, AROHA, message_id, NOW)
        wire = gpgsm.encrypt(gpgsm.sign(message), agency_cert, header_fields)
    finally:
        gpgsm.close()

    async def scenario() -> bytes | None:
        async with running(federation, "agency"):
            sent = await thread(fp.swaks, agency.peer_port, OFFICER, AROHA, wire)
            assert "<~  250 " in sent, sent
            return await wait_for(agency.mailbox(AROHA), message_id, WAIT)

    delivered = asyncio.run(scenario())
    assert delivered is not None, quarantined(federation)
    status = header(delivered, "X-SecureMail-Status")
    assert "verified" in status and "signer=foreign" in status, status
    assert "aes256-cbc" in verified_evidence(federation, message_id)


def test_our_node_to_gpgsm_legacy_peer(
    federation: Federation, foreign: Foreign, legacy_port: int, tmp_path: Path
) -> None:
    """SM-DIR-4, SM-SEND-3/4/6: to a member whose directory entry lists AES-256-CBC only, our
    node sends EnvelopedData (AES-256-CBC, RSA PKCS#1 v1.5), which gpgsm decrypts, and whose
    base64 inner SignedData gpgsm verifies as the agency's, chained to the anchor."""
    require_tool("gpgsm")
    legacy = fp.ForeignKeys(federation.root / LEGACY, "legacy", LEGACY_DOMAIN)
    to = f"officer@{LEGACY_DOMAIN}"
    script = Script("to a legacy gateway", "agency", AROHA, (to,), "Legacy budget")
    message = script.message(5, NOW)

    async def scenario() -> bytes:
        async with (
            running(federation, "agency"),
            foreign_postfix(tmp_path, foreign, legacy, legacy_port) as mta,
        ):
            assert (await submit(federation.nodes["agency"], script, message)).startswith("250")
            [wire] = await stored(mta, "officer")
            return wire

    wire = asyncio.run(scenario())
    assert b"smime-type=enveloped-data" in wire
    gpgsm = fp.GpgsmPeer(legacy, tmp_path / "gnupg")
    try:
        content, status = gpgsm.open(wire)
    finally:
        gpgsm.close()
    agency = fp.fingerprint(foreign.agency_certificate("signing"))
    assert f"GOODSIG {agency}" in status and "TRUST_FULLY" in status, status
    assert content.endswith(message)  # after the Received: field of our relay listener
