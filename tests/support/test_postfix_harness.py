"""The private Postfix harness: instances store, relay, queue and stop as real Postfix does."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import require_tool
from tests.support.postfix import PostfixInstance, free_port, start_postfix

WAIT = 30.0  # seconds; bounds a hang, not a slow loaded machine


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("postfix")
    require_tool("swaks")
    if os.geteuid() != 0:
        reason = "a private Postfix instance needs root (its master process does)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)


class _Collect:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 2.0.0 stored"


class _Sink(Controller):
    """aiosmtpd's threaded Controller on a port the OS picks.

    Controller connects to its configured port once started, so with port 0 it must
    first learn the number it was given.
    """

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextmanager
def _sink(port: int = 0) -> Iterator[tuple[_Sink, _Collect]]:
    handler = _Collect()
    controller = _Sink(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def _swaks(instance: PostfixInstance, to: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = ["swaks", "--server", f"127.0.0.1:{instance.port}", "--from", "alice@agency.test"]
    return subprocess.run(
        [*command, "--to", to, "--header", "Subject: harness check", *extra],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def _wait_for(handler: _Collect, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(handler.messages) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_store_delivers_to_maildir(tmp_path: Path) -> None:
    """A store instance puts a message from swaks into the recipient's Maildir."""
    with start_postfix(tmp_path, mailbox_dir=tmp_path / "mail") as store:
        assert _swaks(store, "bob@store.test").returncode == 0
        store.wait_for_log("status=sent")
        (message,) = store.delivered("bob")
        assert store.queue_ids() == []
    assert b"Subject: harness check" in message
    assert list((tmp_path / "mail" / "store.test" / "bob" / "new").iterdir())


def test_store_refuses_unknown_mailbox(tmp_path: Path) -> None:
    """A store refuses a recipient it has no mailbox for with 550 5.1.1 at RCPT."""
    with start_postfix(tmp_path, mailbox_dir=tmp_path / "mail", mailboxes=["bob"]) as store:
        refused = _swaks(store, "carol@store.test")
    assert refused.returncode != 0
    assert "550 5.1.1" in refused.stdout


def test_relays_to_sink(tmp_path: Path) -> None:
    """An instance relays mail for other domains to its relayhost, envelope intact."""
    with (
        _sink() as (controller, handler),
        start_postfix(tmp_path, relayhost=("127.0.0.1", controller.port)) as relay,
    ):
        assert _swaks(relay, "dave@elsewhere.test").returncode == 0
        _wait_for(handler, 1)
    (envelope,) = handler.messages
    assert envelope.mail_from == "alice@agency.test"
    assert envelope.rcpt_tos == ["dave@elsewhere.test"]
    assert b"Subject: harness check" in (envelope.original_content or b"")


def test_relay_chain_into_store(tmp_path: Path) -> None:
    """Two instances run at once: one relays into the other, which stores the message."""
    with (
        start_postfix(tmp_path, mailbox_dir=tmp_path / "mail") as store,
        start_postfix(tmp_path, relayhost=("127.0.0.1", store.port), domain="relay.test") as relay,
    ):
        assert _swaks(relay, "alice@store.test").returncode == 0
        store.wait_for_log("status=sent")
        assert len(store.delivered("alice")) == 1


def test_deferred_mail_waits_for_flush(tmp_path: Path) -> None:
    """Mail for a relayhost that is down stays queued; flush delivers it once it is up."""
    port = free_port()
    with start_postfix(tmp_path, relayhost=("127.0.0.1", port)) as relay:
        assert _swaks(relay, "erin@elsewhere.test").returncode == 0
        relay.wait_for_log("status=deferred")
        assert len(relay.queue_ids()) == 1
        with _sink(port) as (_, handler):
            relay.flush()
            _wait_for(handler, 1)
            relay.wait_for_log("status=sent")
        assert len(handler.messages) == 1
        assert relay.queue_ids() == []


def test_required_tls_defers_plaintext_hop(tmp_path: Path) -> None:
    """With require_tls_to_relay, a relayhost without STARTTLS gets nothing."""
    with (
        _sink() as (controller, handler),
        start_postfix(
            tmp_path, relayhost=("127.0.0.1", controller.port), require_tls_to_relay=True
        ) as relay,
    ):
        assert _swaks(relay, "frank@elsewhere.test").returncode == 0
        relay.wait_for_log("TLS is required, but was not offered")
        assert len(relay.queue_ids()) == 1
    assert handler.messages == []


def test_stop_ends_the_instance(tmp_path: Path) -> None:
    """Leaving the block stops the instance, whose log stays readable under tmp."""
    with start_postfix(tmp_path) as instance:
        assert instance.run("postfix", "check").returncode == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", instance.port), 5).close()
    assert instance.log_file.is_relative_to(tmp_path)
    assert "stopping the Postfix mail system" in instance.log_file.read_text()
