"""Signed receipts end to end, through real SMTP between real nodes (issue: receipts)."""

from __future__ import annotations

import asyncio
import shlex
import ssl
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.demo.exchange import Script, submit, wait_for
from securemail.queue import QueueStore, ReceiptState
from tests.conftest import require_tool
from tests.node.conftest import WAIT, Federation, deliver_to_smtp_store, mailbox_files, running
from tests.relay.loopback import Recorder, serving

NOW = datetime.now(UTC)


def script(*to: str) -> Script:
    return Script(
        "receipts", "agency", "aroha.ngata@agency.govt.nz", to, "[IN-CONFIDENCE] Contract"
    )


def with_receipt(message: bytes, asked: bool = True) -> bytes:
    if not asked:
        return message
    return b"Disposition-Notification-To: aroha.ngata@agency.govt.nz\r\n" + message


def set_window(federation: Federation, node: str, window: str) -> None:
    config = federation.nodes[node].config
    text = config.read_text()
    config.write_text(
        text.replace(
            'path = "mail"\n', f'path = "mail"\n[organisation.receipts]\nwindow = "{window}"\n', 1
        )
    )


async def until(probe: Callable[[], object], what: str) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        found = probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sender_box(federation: Federation) -> Path:
    return federation.nodes["agency"].mailbox("aroha.ngata@agency.govt.nz")


def reports(federation: Federation, kind: bytes) -> list[bytes]:
    """Messages in the sender's mailbox whose header says ``kind`` (e.g. a report type)."""
    return [data for data in mailbox_files(sender_box(federation)) if kind in data]


def receipt_states(federation: Federation, message_id: str) -> dict[str, ReceiptState]:
    with QueueStore.open(federation.config("agency").database) as store:
        return {r.recipient: r.state for r in store.receipt_records(message_id)}


def test_receipt_requested_is_returned_tracked_and_verifiable(
    federation: Federation, tmp_path: Path
) -> None:
    """A requested receipt comes back signed, the sender gets an MDN, openssl verifies it."""
    message = script("hemi.walker@securemail.provider.nz")
    message_id = Script.message_id(1, "agency.govt.nz")

    async def scenario() -> None:
        async with running(federation, "agency", "provider"):
            reply = await submit(
                federation.nodes["agency"], message, with_receipt(message.message(1, NOW))
            )
            assert reply.startswith("250"), reply
            await until(
                lambda: reports(federation, b"report-type=disposition-notification"), "the MDN"
            )

    asyncio.run(scenario())
    assert receipt_states(federation, message_id) == {
        "hemi.walker@securemail.provider.nz": ReceiptState.RECEIPTED
    }
    [notice] = reports(federation, b"report-type=disposition-notification")
    assert b"processed" in notice and b"This is demo message 1" not in notice
    config = str(federation.nodes["agency"].config)
    result = CliRunner().invoke(cli, ["track", "--config", config, message_id])
    assert result.exit_code == 0, result.output
    assert "receipted" in result.output and "provider" in result.output
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(
        cli, ["evidence", "export", "--config", config, message_id, "-o", str(bundle)]
    )
    assert result.exit_code == 0, result.output
    require_tool("openssl")
    readme = (bundle / "README.md").read_text()
    command = next(
        line.strip().strip("`") for line in readme.splitlines() if "-verify_receipt" in line
    )
    done = subprocess.run(
        shlex.split(command), cwd=bundle, capture_output=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr.decode()


def test_no_receipt_requested_none_sent(federation: Federation) -> None:
    """Without a request no receipt is made: nothing goes back, nothing is awaited."""
    message = script("hemi.walker@securemail.provider.nz")
    message_id = Script.message_id(2, "agency.govt.nz")

    async def scenario() -> None:
        async with running(federation, "agency", "provider"):
            await submit(
                federation.nodes["agency"],
                message,
                with_receipt(message.message(2, NOW), asked=False),
            )
            mailbox = federation.nodes["provider"].mailbox(message.to[0])
            assert await wait_for(mailbox, message_id, WAIT) is not None
            await asyncio.sleep(1.0)

    asyncio.run(scenario())
    assert set(receipt_states(federation, message_id).values()) <= {ReceiptState.NONE}
    with QueueStore.open(federation.config("provider").database) as store:
        assert all(e.kind != "notice" for e in store.list())
    assert not reports(federation, b"report-type=disposition-notification")


def test_mixed_outcome_over_three_recipients(federation: Federation) -> None:
    """Receipted, refused by the peer, and no receipt in time: one final outcome each."""
    set_window(federation, "agency", "3s")
    message = script(
        "hemi.walker@securemail.provider.nz", "accounts@harbourbuilders.co.nz", "ops@gsp.co.nz"
    )
    message_id = Script.message_id(3, "agency.govt.nz")
    fake_gsp = Recorder(rcpt_replies={"accounts@harbourbuilders.co.nz": "550 5.1.1 No such user"})

    async def scenario() -> None:
        async with (
            _impostor_of_gsp(federation, fake_gsp),
            running(federation, "agency", "provider"),
        ):
            await submit(federation.nodes["agency"], message, with_receipt(message.message(3, NOW)))
            await until(
                lambda: (
                    len(reports(federation, b"X-SecureMail-Reason: receipt-expired")) >= 1
                    and reports(federation, b"report-type=disposition-notification")
                ),
                "the MDN and the expiry notice",
            )
            await asyncio.sleep(1.0)  # nothing more may arrive

    asyncio.run(scenario())
    states = receipt_states(federation, message_id)
    assert states["hemi.walker@securemail.provider.nz"] is ReceiptState.RECEIPTED
    assert states["ops@gsp.co.nz"] is ReceiptState.EXPIRED
    assert states.get("accounts@harbourbuilders.co.nz", ReceiptState.NONE) is ReceiptState.NONE
    assert len(reports(federation, b"report-type=disposition-notification")) == 1
    assert len(reports(federation, b"receipt-expired")) == 1
    bounced = reports(federation, b"Final-Recipient: rfc822; accounts@harbourbuilders.co.nz")
    assert len(bounced) == 1
    assert b"X-SecureMail-Reason: remote-refused" in bounced[0]


def _impostor_of_gsp(federation: Federation, handler: Recorder):  # type: ignore[no-untyped-def]
    """The gsp gateway's port served by a recorder holding gsp's real TLS key: it accepts
    the copy for ops@gsp.co.nz and never sends a receipt."""
    root = federation.root
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    passphrase = (root / "passphrase.txt").read_text().strip()
    context.load_cert_chain(
        root / "gsp" / "certs" / "tls.pem", root / "gsp" / "keys" / "tls.key", password=passphrase
    )
    return serving(handler, tls=context, port=federation.nodes["gsp"].peer_port)


def test_receipt_window_expires_once_when_the_store_is_down(federation: Federation) -> None:
    """The receiving store is down past the window: exactly one failure notice, no MDN."""
    set_window(federation, "agency", "2s")
    deliver_to_smtp_store(federation, "provider", 9)
    message = script("hemi.walker@securemail.provider.nz")

    async def scenario() -> None:
        async with running(federation, "agency", "provider"):
            await submit(federation.nodes["agency"], message, with_receipt(message.message(4, NOW)))
            await until(lambda: reports(federation, b"receipt-expired"), "the expiry notice")
            await asyncio.sleep(6.0)  # two more windows: no second notice

    asyncio.run(scenario())
    assert len(reports(federation, b"receipt-expired")) == 1
    assert not reports(federation, b"report-type=disposition-notification")


def test_failure_from_the_recipients_gateway_is_the_only_outcome(federation: Federation) -> None:
    """The receiving gateway bounces the recipient: its notice closes the wait, no expiry notice."""
    set_window(federation, "agency", "3s")
    store = Recorder(rcpt_replies={"hemi.walker@securemail.provider.nz": "550 5.1.1 No such user"})
    message = script("hemi.walker@securemail.provider.nz")
    message_id = Script.message_id(5, "agency.govt.nz")

    async def scenario() -> None:
        async with serving(store) as port:
            deliver_to_smtp_store(federation, "provider", port)
            async with running(federation, "agency", "provider"):
                await submit(
                    federation.nodes["agency"], message, with_receipt(message.message(5, NOW))
                )
                await until(
                    lambda: reports(federation, b"Undelivered"), "the peer's failure notice"
                )
                await asyncio.sleep(6.0)  # two windows: no expiry notice may follow

    asyncio.run(scenario())
    assert len(reports(federation, b"Undelivered")) == 1
    assert not reports(federation, b"receipt-expired")
    assert receipt_states(federation, message_id) == {
        "hemi.walker@securemail.provider.nz": ReceiptState.EXPIRED
    }
