"""THREATS.md K, door exhaustion: a fair share of the listener for each source, in time too.

Real listeners on loopback with short limits: sessions per source address (127.0.0.2 is a
second source on loopback), the TLS-handshake, pre-MAIL and whole-session deadlines that
NOOPs do not extend, and a stop that drops idle sessions at once on both event loops in use
(asyncio's and uvloop's, whose TCP transport is no asyncio.WriteTransport). The federation
flood (200 connections while another member's mail goes through) is in
tests/node/test_door_exhaustion.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest
import uvloop

from securemail.receive import Listener, start_peer_listener, start_relay_listener
from securemail.receive.door import Door, SourceQuota
from tests.receive.conftest import (
    LOOPBACK,
    Inbox,
    RawClient,
    Tls,
    check_recipient,
    raw_session,
    run,
    sender_allowed,
    served,
    settings,
)


async def peer(tls: Tls, door: Door) -> Listener:
    return await start_peer_listener(
        settings(tls.server(), door=door), served=served, admit=Inbox()
    )


async def connect_from(port: int, source: str) -> RawClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return RawClient(reader, writer)


async def noop_until_closed(client: RawClient, every: float = 0.1) -> list[str]:
    """NOOP every ``every`` seconds until the server closes; every reply seen (the 421
    that ends the session may be lost if the server's close overtakes it)."""
    replies: list[str] = []
    while True:
        try:
            await client.send(b"NOOP\r\n")
            reply = await client.reply()
        except ConnectionError:
            return replies
        if not reply:
            return replies
        replies.append(reply)
        await asyncio.sleep(every)


def test_one_source_holds_only_its_share(tls: Tls) -> None:
    """Over per_source sessions from one address: 421 4.7.0; another address still gets in."""

    async def scenario() -> tuple[list[str], str]:
        listener = await peer(tls, Door(per_source=3))
        clients = [await connect_from(listener.port, "127.0.0.1") for _ in range(5)]
        greetings = [await c.reply() for c in clients]
        other = await connect_from(listener.port, "127.0.0.2")
        second = await other.reply()
        for client in [*clients, other]:
            await client.close()
        await listener.close()
        return greetings, second

    greetings, second = run(scenario())
    assert [g[:3] for g in greetings] == ["220"] * 3 + ["421"] * 2
    assert greetings[3].startswith("421 4.7.0 Too many connections from your address")
    assert second.startswith("220 ")


@pytest.mark.parametrize(
    ("door", "reason"),
    [
        (Door(handshake_timeout=0.5), "tls-handshake-timeout"),
        (Door(pre_mail_timeout=0.5), "pre-mail-timeout"),
    ],
    ids=["tls-handshake", "pre-mail"],
)
def test_noop_does_not_extend_the_deadlines_before_mail(
    tls: Tls, door: Door, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that only says NOOP is cut off (421 4.4.2) at the deadline, not after it."""
    caplog.set_level(logging.INFO, "securemail.receive")

    async def scenario() -> tuple[list[str], float]:
        listener = await peer(tls, door)
        started = time.monotonic()
        client = await raw_session(listener.port)
        replies = await noop_until_closed(client)
        elapsed = time.monotonic() - started
        await client.close()
        await listener.close()
        return replies, elapsed

    replies, elapsed = run(scenario())
    assert all(r.startswith(("250", "421 4.4.2")) for r in replies), replies
    assert f"refused 421 {reason}" in caplog.text
    assert 0.4 < elapsed < 2.0, elapsed


def test_a_session_ends_at_its_maximum_length(caplog: pytest.LogCaptureFixture) -> None:
    """After MAIL, NOOPs keep a session no longer than max_session."""
    caplog.set_level(logging.INFO, "securemail.receive")

    async def scenario() -> tuple[list[str], float]:
        listener = await start_relay_listener(
            settings(door=Door(max_session=1.0)),
            networks=LOOPBACK,
            check_recipient=check_recipient,
            sender_allowed=sender_allowed,
            admit=Inbox(),
        )
        started = time.monotonic()
        client = await raw_session(listener.port)
        assert (await client.command("MAIL FROM:<alice@agency.govt.nz>")).startswith("250")
        replies = await noop_until_closed(client)
        elapsed = time.monotonic() - started
        await client.close()
        await listener.close()
        return replies, elapsed

    replies, elapsed = run(scenario())
    assert all(r.startswith(("250", "421 4.4.2")) for r in replies), replies
    assert "refused 421 session-too-long" in caplog.text
    assert 0.9 < elapsed < 3.0, elapsed


def _in_loop(factory: Callable[[], asyncio.AbstractEventLoop] | None) -> Callable[..., Any]:
    def runner(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            return loop_runner.run(asyncio.wait_for(coroutine, 30))

    return runner


@pytest.mark.parametrize("loop_factory", [None, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_stop_drops_noop_sessions_at_once(
    tls: Tls, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    """close() with NOOP-ing clients (plain text and after STARTTLS) returns within the
    drain deadline on both event loops; before, a plain-text one held uvloop open."""

    async def scenario() -> float:
        listener = await start_relay_listener(
            settings(tls.server(), door=Door(drain_deadline=1.0)),
            networks=LOOPBACK,
            check_recipient=check_recipient,
            sender_allowed=sender_allowed,
            admit=Inbox(),
        )
        plain = await raw_session(listener.port)
        secured = await raw_session(listener.port)
        assert (await secured.command("STARTTLS")).startswith("220")
        await secured.start_tls(tls.client)
        noops = [asyncio.create_task(noop_until_closed(c, 0.05)) for c in (plain, secured)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await listener.close()
        elapsed = time.monotonic() - started
        await asyncio.wait_for(asyncio.gather(*noops, return_exceptions=True), 5)
        return elapsed

    assert _in_loop(loop_factory)(scenario()) < 1.0


def test_quarantine_quota_trips_at_its_limit() -> None:
    """The quota is reached at its limit, and never without one."""
    quota = SourceQuota(2, timedelta(hours=1))
    assert not quota.exceeded_by(1)
    assert quota.exceeded_by(2)
    assert not SourceQuota(None).exceeded_by(10_000)
