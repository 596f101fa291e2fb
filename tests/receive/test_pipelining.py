"""PIPELINING (RFC 2920): a pipelined group's replies go out in order in one write, and no
reply is held where the client waits for it (354, STARTTLS, the in-flow pause, a 421)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from securemail.receive import (
    Listener,
    start_ordinary_listener,
    start_peer_listener,
    start_relay_listener,
)
from securemail.receive.door import Door
from securemail.receive.flow import FlowLimits, InFlow
from tests.conftest import require_tool
from tests.receive.conftest import (
    LOOPBACK,
    PLAIN_MESSAGE,
    SMIME_MESSAGE,
    Inbox,
    RawClient,
    Tls,
    check_recipient,
    raw_session,
    raw_tls_session,
    run,
    sender_allowed,
    served,
    settings,
    swaks,
    with_listener,
)
from tests.receive.test_submission_listener import Accounts, start

GROUP = (
    b"MAIL FROM:<alice@agency.govt.nz>\r\n"
    b"RCPT TO:<bob@ministry.govt.nz>\r\n"
    b"RCPT TO:<eve@example.com>\r\n"  # outside the federation: refused
    b"RCPT TO:<carol@agency.govt.nz>\r\n"
    b"DATA\r\n"
)
GROUP_REPLIES = [
    "250 2.1.0 OK",
    "250 2.1.5 OK",
    "550 5.7.1 Relay not permitted",
    "250 2.1.5 OK",
    "354 End data with <CR><LF>.<CR><LF>",
]
SOON = 5.0  # a reply the client waits for comes well within this


@dataclass
class Writes:
    """What the listener on ``port`` writes to its clients, one item a write."""

    port: int = 0
    data: list[bytes] = field(default_factory=list)

    def since(self, count: int) -> list[bytes]:
        return self.data[count:]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writes]:
    """Every StreamWriter write made from the listener's side of a connection."""
    record = Writes()
    original = asyncio.StreamWriter.write

    def write(self: asyncio.StreamWriter, data: Any) -> None:
        sockname = self.get_extra_info("sockname")
        if sockname is not None and sockname[1] == record.port:
            record.data.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", write)
    yield record


def _relay(inbox: Inbox, **options: Any) -> Awaitable[Listener]:
    return start_relay_listener(
        settings(None, **options),
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=inbox,
    )


async def _replies(client: RawClient, count: int) -> list[str]:
    return [await asyncio.wait_for(client.reply(), SOON) for _ in range(count)]


def test_a_pipelined_transaction_is_answered_in_order_in_one_write(writes: Writes) -> None:
    """MAIL, three RCPT (one refused) and DATA in one packet: five replies in order, in one
    write; the message goes to the two accepted recipients."""
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[list[str], list[bytes], str]:
        writes.port = listener.port
        client = await raw_session(listener.port)
        before = len(writes.data)
        await client.send(GROUP)
        replies = await _replies(client, len(GROUP_REPLIES))
        group = writes.since(before)
        await client.send(PLAIN_MESSAGE + b".\r\n")
        final = await client.reply()
        await client.close()
        return replies, group, final

    replies, group, final = run(with_listener(_relay(inbox), body))
    assert replies == GROUP_REPLIES
    assert group == ["\r\n".join(GROUP_REPLIES).encode("ascii") + b"\r\n"]
    assert final.startswith("250 ")
    (received,) = inbox.messages
    assert received.recipients == ("bob@ministry.govt.nz", "carol@agency.govt.nz")


def test_commands_sent_one_by_one_are_answered_one_by_one(writes: Writes) -> None:
    """A client that waits for each reply gets each at once, in its own write."""

    async def body(listener: Listener) -> list[bytes]:
        writes.port = listener.port
        client = await raw_session(listener.port)
        before = len(writes.data)
        for line in GROUP.splitlines(keepends=True):
            await client.send(line)
            await asyncio.wait_for(client.reply(), SOON)
        await client.close()
        return writes.since(before)

    one_by_one = run(with_listener(_relay(Inbox()), body))
    assert one_by_one == [line.encode("ascii") + b"\r\n" for line in GROUP_REPLIES]


def test_354_is_sent_before_the_body_even_with_a_line_of_it_buffered() -> None:
    """DATA and the message's first line in one packet: 354 still comes before the client
    sends the rest, and that line is the message's first."""
    inbox = Inbox()
    first, rest = PLAIN_MESSAGE.split(b"\r\n", 1)

    async def body(listener: Listener) -> tuple[list[str], str]:
        client = await raw_session(listener.port)
        await client.send(GROUP.replace(b"RCPT TO:<eve@example.com>\r\n", b"") + first + b"\r\n")
        replies = await _replies(client, 4)
        await client.send(rest + b".\r\n")
        final = await client.reply()
        await client.close()
        return replies, final

    replies, final = run(with_listener(_relay(inbox), body))
    assert replies[-1].startswith("354 ") and final.startswith("250 ")
    assert inbox.messages[0].body.endswith(PLAIN_MESSAGE)


def test_a_message_and_the_next_group_are_answered_together(writes: Writes) -> None:
    """The end of a message may start the next group (RFC 2920 §3.1): its 250 goes out
    with the replies to the commands behind it, QUIT's 221 last."""
    inbox = Inbox()

    async def body(listener: Listener) -> list[bytes]:
        writes.port = listener.port
        client = await raw_session(listener.port)
        await client.send(GROUP)
        await _replies(client, len(GROUP_REPLIES))
        before = len(writes.data)
        await client.send(PLAIN_MESSAGE + b".\r\nRSET\r\nQUIT\r\n")
        await _replies(client, 3)
        await client.close()
        return writes.since(before)

    after_dot = run(with_listener(_relay(inbox), body))
    assert after_dot == [b"250 2.0.0 Queued\r\n250 OK\r\n221 Bye\r\n"]
    assert len(inbox.messages) == 1


def test_replies_before_starttls_go_out_in_clear_and_pipelined_plaintext_is_dropped(
    tls: Tls, writes: Writes
) -> None:
    """RSET, STARTTLS and MAIL in one packet (relay listener): RSET's reply and the 220 go
    out together before the TLS switch; the MAIL is discarded (RFC 3207 §4.2), so RCPT
    finds none."""

    async def body(listener: Listener) -> tuple[list[bytes], str]:
        writes.port = listener.port
        client = await raw_session(listener.port)
        before = len(writes.data)
        await client.send(b"RSET\r\nSTARTTLS\r\nMAIL FROM:<alice@agency.govt.nz>\r\n")
        await _replies(client, 2)
        in_clear = writes.since(before)
        await client.start_tls(tls.client)
        assert (await client.command("EHLO client.agency.govt.nz")).startswith("250")
        rcpt = await client.command("RCPT TO:<bob@ministry.govt.nz>")
        await client.close()
        return in_clear, rcpt

    start_relay = start_relay_listener(
        settings(tls.server()),
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=Inbox(),
    )
    in_clear, rcpt = run(with_listener(start_relay, body))
    assert in_clear == [b"250 OK\r\n220 Ready to start TLS\r\n"]
    assert rcpt == "503 Error: need MAIL command"


def test_a_pipelined_transaction_over_tls_is_answered_in_one_write(
    tls: Tls, writes: Writes
) -> None:
    """On the peer listener after STARTTLS, MAIL, RCPT and DATA in one TLS record get their
    replies in one write (one TLS record)."""
    inbox = Inbox()
    group = b"MAIL FROM:<gateway@ministry.govt.nz>\r\nRCPT TO:<bob@agency.govt.nz>\r\nDATA\r\n"

    async def body(listener: Listener) -> list[bytes]:
        writes.port = listener.port
        client = await raw_tls_session(listener.port, tls)
        before = len(writes.data)
        await client.send(group)
        await _replies(client, 3)
        replies = writes.since(before)
        await client.send(SMIME_MESSAGE + b".\r\n")
        assert (await client.reply()).startswith("250 ")
        await client.close()
        return replies

    start_peer = start_peer_listener(settings(tls.server()), served=served, admit=inbox)
    replies = run(with_listener(start_peer, body))
    assert replies == [b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n"]
    assert len(inbox.messages) == 1


def test_the_in_flow_pause_does_not_hold_replies_already_due() -> None:
    """RSET and MAIL in one packet while the queue is behind: RSET's reply comes at once,
    MAIL's after the pause."""

    async def behind() -> int:
        return 1000

    flow = InFlow(FlowLimits(delay=0.5, backlog=32), behind)

    async def body(listener: Listener) -> tuple[float, float]:
        client = await raw_session(listener.port)
        started = time.monotonic()
        await client.send(b"RSET\r\nMAIL FROM:<alice@agency.govt.nz>\r\n")
        assert (await client.reply()) == "250 OK"
        rset = time.monotonic() - started
        assert (await client.reply()).startswith("250 2.1.0")
        mail = time.monotonic() - started
        await client.close()
        return rset, mail

    rset, mail = run(with_listener(_relay(Inbox(), inflow=flow), body))
    assert rset < 0.3 and mail >= 0.5


def test_a_421_is_written_after_the_replies_held_before_it() -> None:
    """The session deadline passes while MAIL waits for the backlog reading, with RSET's
    reply held: the client gets that reply, then 421, then the close."""

    async def slow_database() -> int:
        await asyncio.sleep(5)
        return 0

    flow = InFlow(FlowLimits(delay=1.0, backlog=32), slow_database)

    async def body(listener: Listener) -> tuple[str, str, str]:
        client = await raw_session(listener.port)
        await client.send(b"RSET\r\nMAIL FROM:<alice@agency.govt.nz>\r\n")
        replies = await _replies(client, 3)
        await client.close()
        return replies[0], replies[1], replies[2]

    start_relay = _relay(Inbox(), inflow=flow, door=Door(max_session=0.3))
    rset, dropped, closed = run(with_listener(start_relay, body))
    assert rset == "250 OK"
    assert dropped == "421 4.4.2 Timeout, closing connection"
    assert closed == ""


def _starts(tls: Tls, inbox: Inbox) -> dict[str, Callable[[], Awaitable[Listener]]]:
    return {
        "relay": lambda: _relay(inbox),
        "ordinary": lambda: start_ordinary_listener(settings(None), served=served, admit=inbox),
        "peer": lambda: start_peer_listener(settings(tls.server()), served=served, admit=inbox),
        "submission": lambda: start(tls, Accounts(), inbox),
    }


@pytest.mark.parametrize("listener", ["relay", "ordinary", "peer", "submission"])
def test_every_listener_offers_pipelining(tls: Tls, listener: str) -> None:
    """EHLO's reply names PIPELINING on each listener, before TLS and after it."""

    async def body(started: Listener) -> list[str]:
        client = await RawClient.connect(started.port)
        await client.reply()
        replies = [await client.command("EHLO client.agency.govt.nz")]
        if "250-STARTTLS" in replies[0]:
            assert (await client.command("STARTTLS")).startswith("220 ")
            await client.start_tls(tls.client)
            replies.append(await client.command("EHLO client.agency.govt.nz"))
        await client.close()
        return replies

    replies = run(with_listener(_starts(tls, Inbox())[listener](), body))
    assert len(replies) == (1 if listener in ("relay", "ordinary") else 2)
    assert all("250-PIPELINING" in reply.split("\n") for reply in replies)


def test_swaks_pipelines_a_transaction_with_a_refused_recipient(writes: Writes) -> None:
    """swaks --pipeline (a real client) sends MAIL, the RCPTs and DATA at once; the replies
    come in one write, and the message goes to the accepted recipients only."""
    require_tool("swaks")
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[int, str]:
        writes.port = listener.port
        return await swaks(
            listener.port,
            "--pipeline",
            "--helo", "client.agency.govt.nz",
            "--from", "alice@agency.govt.nz",
            "--to", "bob@ministry.govt.nz,eve@example.com,carol@agency.govt.nz",
        )  # fmt: skip

    status, transcript = run(with_listener(_relay(inbox), body))
    assert status == 0, transcript
    assert " -> RCPT TO:<carol@agency.govt.nz>\n -> DATA\n<-  250 2.1.0 OK" in transcript
    assert "\r\n".join(GROUP_REPLIES).encode("ascii") + b"\r\n" in writes.data
    (received,) = inbox.messages
    assert received.recipients == ("bob@ministry.govt.nz", "carol@agency.govt.nz")


def test_swaks_pipelines_over_starttls_to_the_peer_listener(tls: Tls, tmp_path: Path) -> None:
    """swaks --pipeline --tls against the peer listener: the S/MIME message is admitted."""
    require_tool("swaks")
    inbox = Inbox()
    message = tmp_path / "message.eml"
    message.write_bytes(SMIME_MESSAGE)

    async def body(listener: Listener) -> tuple[int, str]:
        return await swaks(
            listener.port,
            "--pipeline", "--tls",
            "--helo", "client.ministry.govt.nz",
            "--from", "gateway@ministry.govt.nz",
            "--to", "bob@agency.govt.nz",
            "--data", f"@{message}",
        )  # fmt: skip

    start_peer = start_peer_listener(settings(tls.server()), served=served, admit=inbox)
    status, transcript = run(with_listener(start_peer, body))
    assert status == 0, transcript
    assert " ~> RCPT TO:<bob@agency.govt.nz>\n ~> DATA\n<~  250 2.1.0 OK" in transcript
    (received,) = inbox.messages
    assert received.tls and SMIME_MESSAGE in received.body
