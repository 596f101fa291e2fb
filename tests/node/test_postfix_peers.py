"""The gateway among real mail software: Postfix in front and behind, swaks, smtp-sink.

Everything runs on loopback as real processes: a private Postfix (tests/support/postfix.py)
as the organisation's internal server relaying into the gateway, or as the store the gateway
delivers into; swaks as a scripted hostile client; smtp-sink as a peer that hangs up.
Blocking harness calls run in threads so the nodes in the test's event loop keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from securemail.demo.exchange import Script, header, submit, wait_for
from securemail.queue import Direction, Entry, QueueStore, State
from tests.conftest import require_tool
from tests.node.conftest import (
    WAIT,
    Federation,
    deliver_to_smtp_store,
    mailbox_files,
    retry_now,
    running,
)
from tests.support.postfix import PostfixInstance, start_postfix

NOW = datetime.now(UTC)
CITIZEN = "hemi.walker@securemail.provider.nz"
TO_CITIZEN = Script(
    "agency to citizen through Postfix",
    "agency",
    "aroha.ngata@agency.govt.nz",
    (CITIZEN,),
    "[IN-CONFIDENCE] Your benefit review",
)
# The provider's store: a Postfix for its domain with the citizen's mailbox.
STORE: dict[str, Any] = {"domain": "securemail.provider.nz", "mailboxes": ("hemi.walker",)}


def _need(*tools: str) -> None:
    """Skip (fail under SECUREMAIL_REQUIRE_ALL=1) without the tools, or without root for Postfix."""
    for tool in tools:
        require_tool(tool)
    if "postfix" in tools and os.geteuid() != 0:
        reason = "a private Postfix instance needs root (its master process does)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)


@contextlib.asynccontextmanager
async def _postfix(tmp: Path, **options: Any) -> AsyncIterator[PostfixInstance]:
    """start_postfix, started and stopped in a thread (both block for seconds)."""
    manager = start_postfix(tmp, **options)
    instance = await asyncio.to_thread(manager.__enter__)
    try:
        yield instance
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def _swaks(port: int, *args: str, data: bytes | None = None) -> str:
    """Run swaks against 127.0.0.1:``port``; its transcript (stdout and stderr)."""
    command = ["swaks", "--server", f"127.0.0.1:{port}", "--timeout", "30", *args]
    if data is not None:
        command += ["--data", "-"]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(data or b""), WAIT + 30)
    return out.decode(errors="replace")


def _entries(federation: Federation, node: str, direction: Direction) -> list[Entry]:
    store = QueueStore.open(federation.config(node).database)
    try:
        return store.list(direction=direction)
    finally:
        store.close()


async def _wait_entry(
    federation: Federation, node: str, direction: Direction, state: State, entry_id: str = ""
) -> Entry:
    """The first entry (or the one with ``entry_id``) to reach ``state`` within WAIT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        for entry in _entries(federation, node, direction):
            if entry.state is state and entry_id in ("", entry.id):
                return entry
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"no {direction} entry {state} on {node}: {_entries(federation, node, direction)}"
    )


async def _send(federation: Federation, n: int) -> None:
    """Submit demo message ``n`` from the agency to the citizen; the relay must answer 250."""
    reply = await submit(federation.nodes["agency"], TO_CITIZEN, TO_CITIZEN.message(n, NOW))
    assert reply.startswith("250"), reply


def test_internal_postfix_relays_into_the_gateway(federation: Federation, tmp_path: Path) -> None:
    """The organisation's own Postfix relays to the gateway; the citizen gets it verified."""
    _need("postfix", "swaks")
    agency = federation.nodes["agency"]
    message = TO_CITIZEN.message(1, NOW)

    async def scenario() -> tuple[str, bytes | None]:
        async with (
            running(federation, "agency", "provider"),
            _postfix(
                tmp_path, relayhost=("127.0.0.1", agency.relay_port), domain="agency.govt.nz"
            ) as mta,
        ):
            envelope = ["--from", TO_CITIZEN.mail_from, "--to", CITIZEN]
            transcript = await _swaks(mta.port, *envelope, data=message)
            # The internal server handed it to the gateway's relay listener, not elsewhere.
            hop = f"relay=127.0.0.1[127.0.0.1]:{agency.relay_port}"
            await asyncio.to_thread(mta.wait_for_log, hop, timeout=WAIT)
            await asyncio.to_thread(mta.wait_for_log, "status=sent", timeout=WAIT)
            mailbox = federation.nodes["provider"].mailbox(CITIZEN)
            return transcript, await wait_for(mailbox, Script.message_id(1, "agency.govt.nz"), WAIT)

    transcript, delivered = asyncio.run(scenario())
    assert "<-  250 2.0.0 Ok: queued" in transcript, transcript
    assert delivered is not None
    status = header(delivered, "X-SecureMail-Status")
    assert "verified" in status and "signer=agency" in status, status
    assert header(delivered, "Subject") == TO_CITIZEN.subject


async def _outage_then_back(
    federation: Federation, tmp: Path, port: int
) -> tuple[Entry, list[bytes], Entry]:
    """With the store down message 2 waits deferred; a store again on ``port`` gets it."""
    await _send(federation, 2)
    deferred = await _wait_entry(federation, "provider", Direction.INBOUND, State.DEFERRED)
    async with _postfix(tmp, mailbox_dir=tmp / "store2", port=port, **STORE) as again:
        retry_now(federation, "provider", deferred.id)
        await asyncio.to_thread(again.wait_for_log, "status=sent", timeout=WAIT)
        done = await _wait_entry(
            federation, "provider", Direction.INBOUND, State.DELIVERED, deferred.id
        )
        await asyncio.sleep(1.0)  # room for a duplicate to show
    return deferred, again.delivered("hemi.walker"), done


def test_postfix_store_behind_the_gateway_outage_defers(
    federation: Federation, tmp_path: Path
) -> None:
    """Delivery into a Postfix store; while the store is down mail waits, then arrives once."""
    _need("postfix")

    async def scenario() -> tuple[list[bytes], Entry, list[bytes], Entry]:
        async with contextlib.AsyncExitStack() as first:
            store = await first.enter_async_context(
                _postfix(tmp_path, mailbox_dir=tmp_path / "store1", **STORE)
            )
            deliver_to_smtp_store(federation, "provider", store.port)
            async with running(federation, "agency", "provider"):
                await _send(federation, 1)
                await asyncio.to_thread(store.wait_for_log, "status=sent", timeout=WAIT)
                await first.aclose()  # the downstream store goes away
                later = await _outage_then_back(federation, tmp_path, store.port)
        return store.delivered("hemi.walker"), *later

    (stored,), deferred, after, done = asyncio.run(scenario())
    assert "smime=pass" in header(stored, "Authentication-Results")
    assert "verified" in header(stored, "X-SecureMail-Status")
    assert header(stored, "Message-ID") == Script.message_id(1, "agency.govt.nz")
    assert deferred.reason == "downstream-unavailable", deferred
    assert [header(m, "Message-ID") for m in after] == [Script.message_id(2, "agency.govt.nz")]
    assert done.id == deferred.id


def test_hostile_swaks_on_the_peer_listener_is_refused(federation: Federation) -> None:
    """A client skipping STARTTLS gets 530 at MAIL; over TLS without a client certificate,
    530 5.7.0 at MAIL too (members only); plain mail from a member over TLS gets 554 5.7.1."""
    _need("swaks")
    peer = federation.nodes["provider"].peer_port
    envelope = ["--from", "mallory@agency.govt.nz", "--to", CITIZEN, "--ehlo", "hostile.test"]

    async def scenario() -> tuple[str, str, str, list[Entry]]:
        async with running(federation, "provider"):
            plaintext = await _swaks(peer, *envelope)
            anonymous = await _swaks(peer, "--tls", *envelope)
            over_tls = await _swaks(peer, "--tls", *member, *envelope)
            return (
                plaintext,
                anonymous,
                over_tls,
                _entries(federation, "provider", Direction.INBOUND),
            )

    member = _client_certificate(federation, "agency")
    plaintext, anonymous, over_tls, queued = asyncio.run(scenario())
    assert re.search(r"^ -> MAIL FROM:<mallory@agency.govt.nz>\n<\*\* 530 ", plaintext, re.M), (
        plaintext
    )
    assert re.search(
        r"^ ~> MAIL FROM:<mallory@agency.govt.nz>\n<~\* 530 5\.7\.0 ", anonymous, re.M
    ), anonymous
    assert "TLS started" in over_tls, over_tls
    # swaks marks an error reply "<**", "<~*" once TLS is on; 554 comes after the data.
    assert re.search(r"^ ~> \.\n<~\* 554 5\.7\.1 ", over_tls, re.M), over_tls
    assert queued == []
    assert not (federation.nodes["provider"].mailbox(CITIZEN) / "new").exists()


def _client_certificate(federation: Federation, org: str) -> list[str]:
    """swaks options presenting ``org``'s TLS client certificate (its key decrypted for swaks)."""
    key = federation.root / f"{org}-tls-plain.key"
    subprocess.run(
        [require_tool("openssl"), "pkey", "-in", str(federation.root / org / "keys" / "tls.key"),
         "-passin", f"file:{federation.root / 'passphrase.txt'}", "-out", str(key)],
        check=True, capture_output=True,
    )  # fmt: skip
    return ["--tls-cert", str(federation.root / org / "certs" / "tls.pem"), "--tls-key", str(key)]


@contextlib.asynccontextmanager
async def _smtp_sink(port: int, *options: str) -> AsyncIterator[None]:
    """smtp-sink on 127.0.0.1:``port`` with ``options``; ended by its process id after."""
    command = [require_tool("smtp-sink"), "-4", "-u", "nobody", *options, f"127.0.0.1:{port}", "10"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        await _wait_listening(port, process)
        yield
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), WAIT)


async def _wait_listening(port: int, process: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        if process.returncode is not None:
            assert process.stderr is not None
            error = (await process.stderr.read()).decode(errors="replace")
            raise AssertionError(f"smtp-sink exited {process.returncode}: {error}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"smtp-sink not listening on {port}")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        pytest.param(("-q", "EHLO"), "protocol-error", id="hangs-up-at-ehlo"),
        pytest.param(("-Q", "CONNECT"), "connect-failed", id="421-at-greeting"),
        pytest.param((), "tls-unavailable", id="no-starttls"),
    ],
)
def test_peer_that_drops_connections_leaves_mail_deferred(
    federation: Federation, options: tuple[str, ...], reason: str
) -> None:
    """A broken peer address defers the agency's entry with a transport reason; nothing lost."""
    _need("smtp-sink")
    peer = federation.nodes["provider"].peer_port

    async def scenario() -> tuple[Entry, Entry, int]:
        async with running(federation, "agency") as nodes:
            async with _smtp_sink(peer, *options):
                await _send(federation, 4)
                deferred = await _wait_entry(
                    federation, "agency", Direction.OUTBOUND, State.DEFERRED
                )
            await nodes.start("provider")
            retry_now(federation, "agency", deferred.id)
            mailbox = federation.nodes["provider"].mailbox(CITIZEN)
            found = await wait_for(mailbox, Script.message_id(4, "agency.govt.nz"), WAIT)
            assert found is not None
            done = await _wait_entry(
                federation, "agency", Direction.OUTBOUND, State.DELIVERED, deferred.id
            )
            await asyncio.sleep(0.5)  # room for a duplicate to show
            return deferred, done, len(mailbox_files(mailbox))

    deferred, done, count = asyncio.run(scenario())
    assert deferred.reason == reason, deferred
    assert done.id == deferred.id
    assert count == 1
