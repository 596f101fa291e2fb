"""The relay connection cache: a secured SMTP session to a Destination serves several messages.

Theory of operation. Setting up a session to a member gateway costs a TCP connection,
EHLO, STARTTLS with a full handshake, the pin check and EHLO again; the transaction itself
is a few round trips. So, as Postfix does (``smtp_connection_cache``), a session whose
transaction ended normally is parked in the pool under its :class:`Destination` instead of
being closed, and the next message to an equal Destination takes it and goes straight to
MAIL (after RSET if the last transaction had any refusal, so no half-open transaction is
ever carried over). Limits (:class:`PoolLimits`): idle sessions per Destination (as many
as the caller's sends at once), a number of messages per session, and a short idle time
after which the session says QUIT.

A session is parked only if nothing went wrong: any exception (protocol error, timeout,
drop, cancellation) closes it, and a 421 reply makes aiosmtplib close it, so it is never
parked. A parked session that the peer closed meanwhile is found closed when taken, or
fails on its first command (RSET or MAIL) with a drop or a 421; then it is dropped and the
message is sent ONCE more on a new session. Only then: nothing of the message was accepted
yet. Any failure after MAIL is the attempt's failure (RelayError), as without a pool.

One pool belongs to one event loop (its sessions' sockets do): the node makes it, passes it
to every ``send`` and awaits :meth:`RelayPool.close_all` at stop. Taking and parking are
synchronous steps of the loop, so one session is never in two transactions at once.

Security: a session is parked under the exact Destination whose pins and anchors it was
checked against when it was opened (:func:`securemail.relay.client.open_session` checks
every new session). A directory refresh that changes a member's pins makes a different
Destination, so no session checked against old pins carries mail for the new ones; the old
ones expire idle. A pooled session carries only what ``send`` would have sent on a new one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiosmtplib import SMTP, SMTPException, SMTPResponseException, SMTPServerDisconnected

from securemail.relay.client import Destination, open_session, quit_session, relay_error
from securemail.relay.transaction import finish_mail, start_mail
from securemail.replies import Reply

log = logging.getLogger("securemail.relay")


@dataclass(frozen=True)
class PoolLimits:
    """How much a RelayPool keeps.

    ``idle_per_destination``: parked sessions per Destination; more are closed on return.
    The caller sets it to the most sends it runs at once to one Destination (the node: its
    outbound worker's concurrency). A new session is opened only when none is parked, so
    the sessions open to a Destination never outnumber the most sends in flight at once; a
    smaller limit only closes sessions the next burst opens again (a full handshake each).
    ``messages_per_session``: transactions after which a session is closed (as Postfix's
    reuse limits, it bounds what one session's state can affect).
    ``idle_seconds``: a parked session not taken within this time says QUIT. 5 s, longer
    than Postfix's 2 s because our set-up is dearer (RSA-2048 at both ends) and a busy
    queue sends again within milliseconds; short because each idle session holds one of
    the receiving listener's connection slots (shared by all its clients), and below the
    shortest idle timeout a peer is likely to use (Postfix ``smtpd_timeout`` is 10 s under
    stress), so the peer rarely closes a session we are about to take.
    """

    idle_per_destination: int = 4
    messages_per_session: int = 100
    idle_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.idle_per_destination < 0:
            raise ValueError("idle_per_destination must not be negative")
        if self.messages_per_session < 1:
            raise ValueError("messages_per_session must be at least 1")
        if self.idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")


class _StaleSessionError(Exception):
    """A parked session failed on its first command: the peer had closed it."""


class _Session:
    """One open, secured session and the pool's bookkeeping of it (mutable by design)."""

    __slots__ = ("client", "expiry", "messages", "needs_rset")

    def __init__(self, client: SMTP) -> None:
        self.client = client
        self.messages = 0  # transactions so far; > 0 means the session is being reused
        self.needs_rset = False
        self.expiry: asyncio.TimerHandle | None = None


class RelayPool:
    """Idle relay sessions by Destination, for one node and one event loop.

    See the module docstring for when a session is reused, dropped, or retried.
    """

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self._idle: dict[Destination, list[_Session]] = {}
        self._quitting: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def idle(self, dest: Destination) -> int:
        """How many sessions to ``dest`` are parked now."""
        return len(self._idle.get(dest, ()))

    async def transact(
        self, dest: Destination, mail_from: str, wanted: list[str], body: bytes
    ) -> dict[str, Reply]:
        """One transaction to ``dest`` on a parked or new session (``send`` with a pool).

        ``wanted`` holds distinct recipients. Raises RelayError as ``send`` does.
        """
        self._check_loop()
        try:
            session = self._take(dest)
            if session is not None:
                try:
                    return await self._use(dest, session, mail_from, wanted, body)
                except _StaleSessionError:
                    log.debug(
                        "parked session to %s:%d was closed; opening a new one",
                        dest.host,
                        dest.port,
                    )
            session = _Session(await open_session(dest))
            return await self._use(dest, session, mail_from, wanted, body)
        except (SMTPException, OSError, TimeoutError) as exc:
            raise relay_error(exc, dest) from exc

    async def close_all(self) -> None:
        """QUIT every parked session; sessions in use are closed when their message ends."""
        self._closed = True
        parked = [s for sessions in self._idle.values() for s in sessions]
        self._idle.clear()
        for session in parked:
            _cancel_expiry(session)
        await asyncio.gather(*(quit_session(s.client) for s in parked), *self._quitting)

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a RelayPool's sessions belong to the event loop that made them")

    def _take(self, dest: Destination) -> _Session | None:
        """The most recently parked live session to ``dest`` (the others age out), if any."""
        sessions = self._idle.get(dest, [])
        found = None
        while sessions and found is None:
            session = sessions.pop()
            _cancel_expiry(session)
            if session.client.is_connected:
                found = session
            else:
                session.client.close()  # the peer closed it while parked (EOF already seen)
        if not sessions:
            self._idle.pop(dest, None)
        return found

    async def _use(
        self, dest: Destination, session: _Session, mail_from: str, wanted: list[str], body: bytes
    ) -> dict[str, Reply]:
        """Run the transaction; park or close the session after it, close it on any failure."""
        try:
            results = await _run(session, mail_from, wanted, body)
        except BaseException:
            session.client.close()
            raise
        session.messages += 1
        # Any refusal may have left a transaction open (MAIL accepted, every RCPT refused):
        # RSET before the next one is cheap and needs no finer bookkeeping.
        session.needs_rset = not all(reply.ok for reply in results.values())
        if not self._park(dest, session):
            await quit_session(session.client)
        return results

    def _park(self, dest: Destination, session: _Session) -> bool:
        limits = self.limits
        if (
            self._closed
            or not session.client.is_connected
            or session.messages >= limits.messages_per_session
            or self.idle(dest) >= limits.idle_per_destination
        ):
            return False
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(limits.idle_seconds, self._expire, dest, session)
        self._idle.setdefault(dest, []).append(session)
        return True

    def _expire(self, dest: Destination, session: _Session) -> None:
        """The idle time is over: unpark the session and QUIT it in the background."""
        sessions = self._idle.get(dest, [])
        if session not in sessions:
            return
        sessions.remove(session)
        if not sessions:
            del self._idle[dest]
        task = asyncio.get_running_loop().create_task(quit_session(session.client))
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)


async def _run(
    session: _Session, mail_from: str, wanted: list[str], body: bytes
) -> dict[str, Reply]:
    """RSET if needed, MAIL, then RCPT and DATA; a reused session failing at first is stale."""
    client = session.client
    try:
        if session.needs_rset:
            await client.rset()
        refusal = await start_mail(client, mail_from, wanted, body)
    except (SMTPServerDisconnected, SMTPResponseException) as exc:
        if session.messages:
            raise _StaleSessionError from exc
        raise
    if refusal is None:
        return await finish_mail(client, mail_from, wanted, body)
    if session.messages and not client.is_connected:
        # A 421 to MAIL closed the session: the peer's own idle timeout crossed our MAIL.
        raise _StaleSessionError
    return refusal


def _cancel_expiry(session: _Session) -> None:
    if session.expiry is not None:
        session.expiry.cancel()
        session.expiry = None
