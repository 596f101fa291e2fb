"""Issue 5 "Prove it": kill -9 of the receiving node while receipt-requested mail flows.

The provider issues each receipt in the commit that records the delivery, so a SIGKILL at
any point (mid-relay, after the Maildir rename, before or after the receipt went back) can
neither lose the receipt nor issue a second one the sender would count: every message the
agency acknowledged is delivered once, receipted once, and its sender gets one MDN. The
nodes run as real ``securemail serve`` processes.

A kill between the receiver's commit and its 250 makes the sender relay a second copy under
a new signature; the lost-250 test stages exactly that, deterministically, in process.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib

from securemail.demo.exchange import Script, head, submit
from securemail.demo.federation import free_port
from securemail.queue import Direction, QueueStore, ReceiptState, State
from tests.node.conftest import Federation, running
from tests.node.test_crash import Process
from tests.node.test_inbound_refusals import peer_tls, wait_until
from tests.node.test_receipts import NOW, reports, set_window
from tests.relay.loopback import Recorder, serving

WAIT = 60.0  # seconds, for everything to settle after the last restart
SENDER = "aroha.ngata@agency.govt.nz"
CITIZEN = "hemi.walker@securemail.provider.nz"
SCRIPT = Script("receipt crash test", "agency", SENDER, (CITIZEN,), "Receipts under fire")
ORIGINAL = re.compile(rb"^Original-Message-ID:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)


async def _send(port: int, n: int) -> bool:
    """Submit message ``n`` asking for a receipt; True if the agency answered 250."""
    message = b"Disposition-Notification-To: " + SENDER.encode() + b"\r\n"
    try:
        await aiosmtplib.send(
            message + SCRIPT.message(n, datetime.now(UTC)),
            sender=SENDER,
            recipients=[CITIZEN],
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
            timeout=10,
        )
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


def _files(mailbox: Path) -> list[bytes]:
    folders = (mailbox / "new", mailbox / "cur")
    return [f.read_bytes() for d in folders if d.is_dir() for f in d.iterdir()]


def delivered(mailbox: Path) -> Counter[str]:
    """How many times each Message-ID lies in ``mailbox``."""
    counts: Counter[str] = Counter()
    for data in _files(mailbox):
        for line in head(data).splitlines():
            if line.lower().startswith(b"message-id:"):
                counts[line.split(b":", 1)[1].strip().decode()] += 1
    return counts


def mdns(mailbox: Path) -> Counter[str]:
    """How many MDNs in ``mailbox`` name each original Message-ID (RFC 8098 §3.2.5)."""
    counts: Counter[str] = Counter()
    for data in _files(mailbox):
        if b"report-type=disposition-notification" in data:
            counts.update(m.decode() for m in ORIGINAL.findall(data.replace(b"\r\n", b"\n")))
    return counts


def wait_for(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not done() and time.monotonic() < deadline:
        time.sleep(0.5)


def test_kill_9_of_the_receiver_still_receipts_each_message_once(federation: Federation) -> None:
    """SIGKILL of the receiving node mid-stream: each acknowledged message is delivered once,
    receipted once at the sender's gateway, and its sender gets exactly one MDN."""
    agency = Process(federation.nodes["agency"].config)
    provider = Process(federation.nodes["provider"].config)
    inbox = federation.nodes["provider"].mailbox(CITIZEN)
    outbox = federation.nodes["agency"].mailbox(SENDER)
    acknowledged: set[str] = set()
    try:
        agency.start()
        provider.start()
        n = 0
        for pause in (0.0, 0.4, 1.2):  # kill while relaying, delivering, sending receipts
            for _ in range(10):
                n += 1
                if asyncio.run(_send(federation.nodes["agency"].relay_port, n)):
                    acknowledged.add(Script.message_id(n, "agency.govt.nz"))
            time.sleep(pause)
            provider.kill()
            provider.start()
        wait_for(
            lambda: acknowledged <= set(delivered(inbox)) and acknowledged <= set(mdns(outbox))
        )
        time.sleep(1.0)  # a second delivery or MDN would show by now
    finally:
        agency.stop()
        provider.stop()
    assert len(acknowledged) == n, "the agency was never down: every submission is acknowledged"
    assert delivered(inbox) == Counter(dict.fromkeys(acknowledged, 1))
    assert mdns(outbox) == Counter(dict.fromkeys(acknowledged, 1))
    with QueueStore.open(federation.config("agency").database) as store:
        for message_id in acknowledged:
            [record] = store.receipt_records(message_id)
            assert record.state is ReceiptState.RECEIPTED, message_id
            receipted = [e for e in store.events(record.entry_id) if e.event == "receipted"]
            assert len(receipted) == 1, message_id
        inbound = store.list(direction=Direction.INBOUND)
        assert [e.id for e in inbound if e.state is State.QUARANTINED] == []


def relisten(federation: Federation, node: str, old: int, new: int) -> None:
    """Move ``node``'s peer listener from port ``old`` to ``new`` (the directory keeps
    listing the port it was founded with)."""
    config = federation.nodes[node].config
    text = config.read_text()
    config.write_text(text.replace(f'"127.0.0.1:{old}"', f'"127.0.0.1:{new}"', 1))


async def hand_over(federation: Federation, port: int, message: bytes) -> None:
    """Give ``message`` to the provider's peer listener on ``port`` over STARTTLS."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=True, tls_context=peer_tls(federation)
    )
    async with client:
        await client.sendmail("aroha.ngata@agency.govt.nz", [CITIZEN], message)


def provider_tls(federation: Federation) -> ssl.SSLContext:
    """The provider gateway's own TLS key and certificate (the pin the directory lists)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    folder, passphrase = federation.root / "provider", (federation.root / "passphrase.txt")
    context.load_cert_chain(
        folder / "certs" / "tls.pem",
        folder / "keys" / "tls.key",
        password=passphrase.read_text().strip(),
    )
    return context


def receipt_taken(federation: Federation) -> bool | None:
    """Whether the agency has settled a receipt message (taken, late or refused)."""
    with QueueStore.open(federation.config("agency").database) as store:
        inbound = store.list(direction=Direction.INBOUND)
    return any(e.state in (State.DELIVERED, State.QUARANTINED) for e in inbound) or None


def receipt_state(federation: Federation, message_id: str) -> ReceiptState | None:
    with QueueStore.open(federation.config("agency").database) as store:
        [record] = store.receipt_records(message_id)
    settled = record.state in (ReceiptState.RECEIPTED, ReceiptState.EXPIRED)
    return record.state if settled else None


def test_lost_250_still_ends_receipted(federation: Federation) -> None:
    """The receiver queued the first copy but its 250 was lost, and the sender relayed the
    message again: the receipt still settles the recipient, and the sender gets one MDN."""
    set_window(federation, "agency", "5s")
    listed, hidden = federation.nodes["provider"].peer_port, free_port()
    relisten(federation, "provider", listed, hidden)
    mid = Script.message_id(1, "agency.govt.nz")
    message = b"Disposition-Notification-To: " + SENDER.encode() + b"\r\n" + SCRIPT.message(1, NOW)

    async def scenario() -> ReceiptState:
        lost = Recorder(drop_after_data=True)  # takes the copy; its 250 never reaches agency
        async with running(federation, "agency", "provider") as nodes:
            async with serving(lost, tls=provider_tls(federation), port=listed):
                await submit(federation.nodes["agency"], SCRIPT, message)
                await wait_until(lambda: lost.received or None, "the first copy")
                await hand_over(federation, hidden, lost.received[0].content)
                await wait_until(lambda: receipt_taken(federation), "the first receipt")
            await nodes.stop("provider")  # back on the listed port for the sender's retry
            relisten(federation, "provider", hidden, listed)
            await nodes.start("provider")
            return await wait_until(lambda: receipt_state(federation, mid), "a final outcome")

    assert asyncio.run(scenario()) is ReceiptState.RECEIPTED
    assert len(reports(federation, b"report-type=disposition-notification")) == 1
