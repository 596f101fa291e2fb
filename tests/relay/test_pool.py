"""The relay connection cache: one secured session serves several messages to one Destination."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from securemail.directory.model import spki_pin
from securemail.relay import (
    Destination,
    PeerTls,
    PoolLimits,
    RelayError,
    RelayPool,
    RelayReason,
    send,
)
from securemail.replies import Reply
from tests.relay import loopback
from tests.relay.loopback import WAIT, Recorder, TlsPki, serving

BODY = b"Subject: SecureMail message\r\n\r\nprotected content\r\n"


@pytest.fixture(autouse=True, params=[False, True], ids=["one-by-one", "pipelined"])
def offer_pipelining(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pool test runs against a server without, then with PIPELINING (RFC 2920)."""

    def offering(handler: Recorder, **options: Any) -> AbstractAsyncContextManager[int]:
        handler.pipelining = request.param
        return loopback.serving(handler, **options)

    monkeypatch.setattr(sys.modules[__name__], "serving", offering)


@dataclass
class Commands(Recorder):
    """A Recorder that also notes MAIL, RSET and QUIT, and keeps each connection's server."""

    commands: list[str] = field(default_factory=list)
    servers: list[SMTP] = field(default_factory=list)

    async def handle_MAIL(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.commands.append("MAIL")
        reused = server in self.servers
        if not reused:
            self.servers.append(server)
        return await self.on_mail(server, reused) or await super().handle_MAIL(
            server, session, envelope, address, options
        )

    async def on_mail(self, server: SMTP, reused: bool) -> str | None:
        """A reply that replaces the normal MAIL handling, or None (subclasses decide)."""
        return None

    async def handle_RSET(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.commands.append("RSET")
        return "250 OK"

    async def handle_QUIT(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.commands.append("QUIT")
        return "221 Bye"


@dataclass
class DropReusedMail(Commands):
    """Closes the connection, unanswered, at the first MAIL of a reused session (peer gone)."""

    async def on_mail(self, server: SMTP, reused: bool) -> str | None:
        if reused and isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
        return None


@dataclass
class Refuse421OnReuse(Commands):
    """Answers 421 to MAIL on a reused session (its idle timeout crossed our MAIL)."""

    async def on_mail(self, server: SMTP, reused: bool) -> str | None:
        return "421 4.4.2 test.invalid idle timeout, closing" if reused else None


def member(port: int, peer: PeerTls) -> Destination:
    return Destination("127.0.0.1", port, "gw.agency.example", peer, timeout=WAIT)


def plain(port: int) -> Destination:
    return Destination("127.0.0.1", port, "gw.example", None, require_tls=False, timeout=WAIT)


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def run_member(
    tls_pki: TlsPki,
    handler: Recorder,
    script: Callable[[RelayPool, Destination], Awaitable[None]],
    limits: PoolLimits | None = None,
) -> None:
    """Run ``script`` with a pool and a member Destination at a TLS server; close the pool."""

    async def run() -> None:
        pool = RelayPool(limits)
        async with serving(handler, tls=tls_pki.context(tls_pki.server)) as port:
            try:
                await script(pool, member(port, tls_pki.peer()))
            finally:
                await pool.close_all()

    asyncio.run(run())


async def mail(pool: RelayPool, dest: Destination, rcpt: str = "b@y.example") -> Reply:
    return (await send(dest, "a@x.example", [rcpt], BODY, pool=pool))[rcpt]


def test_two_messages_share_one_connection(tls_pki: TlsPki) -> None:
    """Two messages to one member gateway go over one TLS session, parked in between."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        assert (await mail(pool, dest)).ok
        assert pool.idle(dest) == 1
        assert (await mail(pool, dest, "c@y.example")).ok

    run_member(tls_pki, handler, script)
    assert handler.connections == 1
    assert [r.rcpt_tos for r in handler.received] == [("b@y.example",), ("c@y.example",)]
    assert all(r.tls for r in handler.received)
    assert handler.commands == ["MAIL", "MAIL", "QUIT"]  # no RSET after a clean transaction


def test_close_all_quits_parked_sessions(tls_pki: TlsPki) -> None:
    """At stop, every parked session says QUIT and its connection closes."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        await asyncio.gather(*(mail(pool, dest) for _ in range(3)))
        await pool.close_all()
        assert pool.idle(dest) == 0
        await eventually(lambda: handler.disconnections == handler.connections)

    run_member(tls_pki, handler, script)
    assert handler.commands.count("QUIT") == handler.connections


def test_session_closed_by_the_peer_while_idle_is_replaced(tls_pki: TlsPki) -> None:
    """A parked session the peer closed is dropped; the message goes once, on a new session."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        await mail(pool, dest)
        for server in handler.servers:
            assert server.transport is not None
            server.transport.close()
        await eventually(lambda: handler.disconnections == 1)
        assert (await mail(pool, dest, "c@y.example")).ok

    run_member(tls_pki, handler, script)
    assert handler.connections == 2
    assert [r.rcpt_tos for r in handler.received] == [("b@y.example",), ("c@y.example",)]


def test_drop_at_mail_on_a_reused_session_is_retried_once(tls_pki: TlsPki) -> None:
    """A reused session lost at MAIL (nothing accepted yet) is retried once on a new one."""
    handler = DropReusedMail()

    async def script(pool: RelayPool, dest: Destination) -> None:
        await mail(pool, dest)
        assert (await mail(pool, dest, "c@y.example")).ok

    run_member(tls_pki, handler, script)
    assert handler.connections == 2
    assert [r.rcpt_tos for r in handler.received] == [("b@y.example",), ("c@y.example",)]


def test_421_to_mail_on_a_reused_session_is_retried_once(tls_pki: TlsPki) -> None:
    """A 421 to MAIL on a reused session closes it; the message goes on a new session."""
    handler = Refuse421OnReuse()

    async def script(pool: RelayPool, dest: Destination) -> None:
        await mail(pool, dest)
        assert (await mail(pool, dest, "c@y.example")).ok

    run_member(tls_pki, handler, script)
    assert handler.connections == 2
    assert len(handler.received) == 2


def test_drop_after_data_on_a_reused_session_is_not_retried(tls_pki: TlsPki) -> None:
    """A drop once DATA started fails the attempt (RelayError): no second copy, session gone."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        await mail(pool, dest)
        handler.drop_after_data = True
        with pytest.raises(RelayError) as caught:
            await mail(pool, dest, "c@y.example")
        assert caught.value.reason is RelayReason.PROTOCOL
        assert pool.idle(dest) == 0

    run_member(tls_pki, handler, script)
    assert handler.connections == 1
    assert len(handler.received) == 2


def test_refused_transaction_is_reset_before_the_next(tls_pki: TlsPki) -> None:
    """After a refusal the session is RSET, and the next message carries only its own envelope."""
    handler = Commands(rcpt_replies={"gone@y.example": "550 5.1.1 No such user"})

    async def script(pool: RelayPool, dest: Destination) -> None:
        assert (await mail(pool, dest, "gone@y.example")).permanent
        assert (await mail(pool, dest, "c@y.example")).ok
        assert (await mail(pool, dest, "d@y.example")).ok

    run_member(tls_pki, handler, script)
    assert handler.connections == 1
    assert handler.commands == ["MAIL", "RSET", "MAIL", "MAIL", "QUIT"]
    assert [r.rcpt_tos for r in handler.received] == [("c@y.example",), ("d@y.example",)]


def test_refused_data_then_clean_message(tls_pki: TlsPki) -> None:
    """A 554 to DATA does not leak into the next message: it is accepted on its own."""
    handler = Commands(data_reply="554 5.7.1 Refused by policy")

    async def script(pool: RelayPool, dest: Destination) -> None:
        assert (await mail(pool, dest)).permanent
        handler.data_reply = "250 2.0.0 Ok"
        assert (await mail(pool, dest, "c@y.example")).ok

    run_member(tls_pki, handler, script)
    assert handler.connections == 1
    assert handler.received[-1].rcpt_tos == ("c@y.example",)


def test_different_pins_never_share_a_session(tls_pki: TlsPki) -> None:
    """A Destination with other pins (a directory refresh) gets its own, newly checked session."""
    handler = Commands()
    stranger = spki_pin(tls_pki.stranger.certificate)

    async def script(pool: RelayPool, dest: Destination) -> None:
        renewed = member(dest.port, tls_pki.peer(dest_pins(dest) | {stranger}))
        await mail(pool, dest)
        await mail(pool, renewed)
        await mail(pool, renewed)
        assert (pool.idle(dest), pool.idle(renewed)) == (1, 1)

    run_member(tls_pki, handler, script)
    assert handler.connections == 2


def dest_pins(dest: Destination) -> frozenset[str]:
    assert dest.peer_tls is not None
    return dest.peer_tls.pins


def test_wrong_pin_on_a_new_session_is_refused_and_not_kept(tls_pki: TlsPki) -> None:
    """The pin check still runs on every new pooled session; a mismatch parks nothing."""
    handler = Commands()
    other = frozenset({spki_pin(tls_pki.stranger.certificate)})

    async def script(pool: RelayPool, dest: Destination) -> None:
        wrong = member(dest.port, tls_pki.peer(other))
        with pytest.raises(RelayError) as caught:
            await mail(pool, wrong)
        assert caught.value.reason is RelayReason.TLS_PIN_MISMATCH
        assert pool.idle(wrong) == 0

    run_member(tls_pki, handler, script)
    assert handler.commands == []


def test_session_is_closed_after_its_message_limit(tls_pki: TlsPki) -> None:
    """With two messages per session, five messages use three connections."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        for n in range(5):
            assert (await mail(pool, dest, f"r{n}@y.example")).ok

    run_member(tls_pki, handler, script, PoolLimits(messages_per_session=2))
    assert handler.connections == 3
    assert len(handler.received) == 5


def test_idle_session_expires(tls_pki: TlsPki) -> None:
    """A parked session not taken within the idle time says QUIT; the next message reconnects."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        await mail(pool, dest)
        await eventually(lambda: handler.disconnections == 1)
        assert pool.idle(dest) == 0
        assert handler.commands == ["MAIL", "QUIT"]
        assert (await mail(pool, dest, "c@y.example")).ok

    run_member(tls_pki, handler, script, PoolLimits(idle_seconds=0.2))
    assert handler.connections == 2


def test_concurrent_sends_never_share_a_session(tls_pki: TlsPki) -> None:
    """Eight sends at once are all delivered; at most the idle limit stays parked after."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        rcpts = [f"r{n}@y.example" for n in range(8)]
        replies = await asyncio.gather(*(mail(pool, dest, r) for r in rcpts))
        assert all(reply.ok for reply in replies)
        assert 1 <= pool.idle(dest) <= 4
        again = await asyncio.gather(*(mail(pool, dest, r) for r in rcpts))
        assert all(reply.ok for reply in again)
        await pool.close_all()
        await eventually(lambda: handler.disconnections == handler.connections)

    run_member(tls_pki, handler, script)
    assert sorted(r.rcpt_tos[0] for r in handler.received) == sorted(
        [f"r{n}@y.example" for n in range(8)] * 2
    )
    assert handler.connections <= 16


def test_pool_after_close_all_still_sends_but_keeps_nothing() -> None:
    """A send after close_all (a late worker at stop) is delivered and its session closed."""
    handler = Commands()

    async def run() -> int:
        pool = RelayPool()
        async with serving(handler) as port:
            await pool.close_all()
            await mail(pool, plain(port))
            return pool.idle(plain(port))

    assert asyncio.run(run()) == 0
    assert handler.commands == ["MAIL", "QUIT"]


def test_pool_refuses_a_second_event_loop() -> None:
    """Sessions belong to one loop: using a pool from another loop is a programming error."""
    handler = Commands()
    pool = RelayPool()

    async def run() -> None:
        async with serving(handler) as port:
            await mail(pool, plain(port))

    asyncio.run(run())
    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(run())


def test_limits_are_validated() -> None:
    """Nonsensical pool limits are a settings error, not a silent default."""
    with pytest.raises(ValueError, match="messages_per_session"):
        PoolLimits(messages_per_session=0)
    with pytest.raises(ValueError, match="idle_seconds"):
        PoolLimits(idle_seconds=0)


def test_sessions_up_to_the_idle_limit_are_all_reused(tls_pki: TlsPki) -> None:
    """Rounds of as many sends at once as the idle limit open sessions in the first round only."""
    handler = Commands()

    async def script(pool: RelayPool, dest: Destination) -> None:
        for round_ in range(3):
            rcpts = [f"r{round_}-{n}@y.example" for n in range(6)]
            replies = await asyncio.gather(*(mail(pool, dest, r) for r in rcpts))
            assert all(reply.ok for reply in replies)
            assert pool.idle(dest) == 6

    run_member(tls_pki, handler, script, PoolLimits(idle_per_destination=6))
    assert handler.connections == 6
    assert len(handler.received) == 18
