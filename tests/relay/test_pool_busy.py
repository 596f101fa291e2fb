"""The relay pool against a busy peer: a 421 to a new session lowers the Destination's sessions
and the message waits for one, instead of going back to the queue's retry schedule."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from securemail.relay import Destination, PoolLimits, RelayError, RelayPool, RelayReason, send
from securemail.replies import Reply
from tests.relay.loopback import WAIT, TlsPki

BODY = b"Subject: SecureMail message\r\n\r\nprotected content\r\n"
_EHLO_PLAIN = b"250-test.invalid\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
_EHLO_TLS = b"250-test.invalid\r\n250 8BITMIME\r\n"
_EHLO_TLS_PIPELINING = b"250-test.invalid\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
BUSY = b"421 4.7.0 Too many connections, try again later\r\n"


@dataclass
class SharePeer:
    """A peer whose door lets ``share`` sessions in at once, as receive.door does: a 421 to
    the greeting beyond it (``at`` "greeting"), or to MAIL once TLS is up ("mail"); with
    ``pipelining`` it offers PIPELINING (RFC 2920) after STARTTLS."""

    share: int
    at: str = "greeting"
    pipelining: bool = False
    live: int = 0  # sessions let in now
    most: int = 0  # the most let in at once
    refused: int = 0  # 421 answers
    received: list[str] = field(default_factory=list)  # RCPT of each accepted message

    def admit(self) -> bool:
        if self.live >= self.share:
            self.refused += 1
            return False
        self.live += 1
        self.most = max(self.most, self.live)
        return True

    async def session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: ssl.SSLContext
    ) -> None:
        """One SMTP session: STARTTLS, then 250 to every command; DATA read to its dot."""
        admitted = self.at == "greeting" and self.admit()
        try:
            if self.at == "greeting" and not admitted:
                writer.write(BUSY)
                await writer.drain()
                return
            writer.write(b"220 test.invalid ESMTP\r\n")
            secure, rcpt = False, ""
            while line := await reader.readline():
                verb = line.split(maxsplit=1)[0].upper() if line.strip() else b""
                if verb == b"EHLO":
                    tls_ehlo = _EHLO_TLS_PIPELINING if self.pipelining else _EHLO_TLS
                    writer.write(tls_ehlo if secure else _EHLO_PLAIN)
                elif verb == b"STARTTLS" and not secure:
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                    await writer.drain()
                    await writer.start_tls(tls)
                    secure = True
                elif verb == b"MAIL" and self.at == "mail" and not admitted:
                    admitted = self.admit()
                    if not admitted:
                        writer.write(BUSY)
                        await writer.drain()
                        return
                    writer.write(b"250 2.1.0 OK\r\n")
                elif verb == b"RCPT":
                    rcpt = line.decode().split(":", 1)[1].strip().strip("<>")
                    writer.write(b"250 2.1.5 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 Go ahead\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    await asyncio.sleep(0.02)  # a peer's work per message: sessions overlap
                    self.received.append(rcpt)
                    writer.write(b"250 2.0.0 Accepted\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 2.0.0 OK\r\n")
                await writer.drain()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            if admitted:
                self.live -= 1
            writer.close()


@asynccontextmanager
async def serving(peer: SharePeer, tls: ssl.SSLContext) -> AsyncIterator[int]:
    server = await asyncio.start_server(
        lambda r, w: peer.session(r, w, tls), "127.0.0.1", 0, limit=1 << 20
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


def member(port: int, tls_pki: TlsPki) -> Destination:
    return Destination("127.0.0.1", port, "gw.agency.example", tls_pki.peer(), timeout=WAIT)


async def mail(pool: RelayPool, dest: Destination, rcpt: str) -> Reply:
    return (await send(dest, "a@x.example", [rcpt], BODY, pool=pool))[rcpt]


def burst(tls_pki: TlsPki, peer: SharePeer, limits: PoolLimits, rounds: int) -> list[Reply]:
    """``rounds`` bursts of 16 sends at once (the node's outbound concurrency) to the peer."""

    async def run() -> list[Reply]:
        pool = RelayPool(limits)
        async with serving(peer, tls_pki.context(tls_pki.server)) as port:
            dest = member(port, tls_pki)
            replies: list[Reply] = []
            try:
                for n in range(rounds):
                    rcpts = [f"r{n}-{k}@y.example" for k in range(16)]
                    replies += await asyncio.gather(*(mail(pool, dest, r) for r in rcpts))
            finally:
                await pool.close_all()
            return replies

    return asyncio.run(run())


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize("at", ["greeting", "mail"])
def test_peer_over_its_share_gets_every_message_without_deferral(
    tls_pki: TlsPki, at: str, pipelining: bool
) -> None:
    """Sixteen sends at once to a peer that takes three sessions: each is delivered, once."""
    peer = SharePeer(3, at, pipelining)
    replies = burst(tls_pki, peer, PoolLimits(idle_per_destination=16), rounds=3)
    assert all(reply.ok for reply in replies), [r.line() for r in replies if not r.ok]
    assert sorted(peer.received) == sorted(
        f"r{n}-{k}@y.example" for n in range(3) for k in range(16)
    )
    assert peer.refused > 0  # the peer did refuse sessions: the pool waited instead
    assert peer.most <= 3


def test_peer_busy_past_the_wait_defers_at_greeting(tls_pki: TlsPki) -> None:
    """A peer that refuses every session at the greeting: after the bounded wait, each of
    eight sends fails as before (connect-failed), having tried twice, not in a loop."""
    peer = SharePeer(0, "greeting")

    async def run() -> list[BaseException | dict[str, Reply]]:
        pool = RelayPool(PoolLimits(busy_seconds=0.3))
        async with serving(peer, tls_pki.context(tls_pki.server)) as port:
            dest = member(port, tls_pki)
            started = time.monotonic()
            sends = (
                send(dest, "a@x.example", [f"r{k}@y.example"], BODY, pool=pool) for k in range(8)
            )
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
            assert 0.3 <= time.monotonic() - started < 5
            await pool.close_all()
            return outcomes

    outcomes = asyncio.run(run())
    assert all(
        isinstance(o, RelayError) and o.reason is RelayReason.CONNECT_FAILED for o in outcomes
    )
    assert peer.refused == 16  # each send's first attempt and the one after the wait


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_peer_busy_past_the_wait_defers_at_mail(tls_pki: TlsPki, pipelining: bool) -> None:
    """A peer that refuses every session at MAIL: after the bounded wait, the recipient gets
    the peer's 421 (temporary), as before."""
    peer = SharePeer(0, "mail", pipelining)

    async def run() -> Reply:
        pool = RelayPool(PoolLimits(busy_seconds=0.3))
        async with serving(peer, tls_pki.context(tls_pki.server)) as port:
            try:
                return await mail(pool, member(port, tls_pki), "b@y.example")
            finally:
                await pool.close_all()

    reply = asyncio.run(run())
    assert reply.code == 421 and reply.temporary
    assert peer.refused == 2
    assert peer.received == []


def test_lowered_limit_recovers_after_successes(tls_pki: TlsPki) -> None:
    """After the peer's share grows, later bursts open more sessions again (1/limit per
    message), up to what the sends need."""
    peer = SharePeer(2, "greeting")

    async def run() -> int:
        pool = RelayPool(PoolLimits(idle_per_destination=8, idle_seconds=0.05))
        async with serving(peer, tls_pki.context(tls_pki.server)) as port:
            dest = member(port, tls_pki)
            try:
                await asyncio.gather(*(mail(pool, dest, f"a{k}@y.example") for k in range(8)))
                peer.share, peer.most = 8, 0
                for n in range(6):
                    rcpts = [f"b{n}-{k}@y.example" for k in range(8)]
                    await asyncio.gather(*(mail(pool, dest, r) for r in rcpts))
            finally:
                await pool.close_all()
            return peer.most

    assert asyncio.run(run()) > 2
    assert len(peer.received) == 8 + 6 * 8
