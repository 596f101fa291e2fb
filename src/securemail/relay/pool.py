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
drop, cancellation) closes it, and a 421 reply closes it (aiosmtplib does, and so does the
pipelined transaction), so it is never parked. A parked session that the peer closed
meanwhile is found closed when taken, or fails on its first command (RSET or MAIL, or the
pipelined group's MAIL reply) with a drop or a 421; then it is dropped and the message is
sent ONCE more on a new session. Only then: nothing of the message was accepted
yet. Any failure after MAIL is the attempt's failure (RelayError), as without a pool.

A peer that refuses a NEW session because it is busy (421 to the greeting, or to the first
MAIL: the door's share per source or per member, THREATS.md K) makes the pool lower that
Destination's allowed sessions to the number open now, as Postfix's destination concurrency
feedback does; the message then waits for a session of that Destination to come free (at
most ``busy_seconds``, then one more attempt whose failure is the normal deferral) instead
of going back to the queue's retry schedule. Each later transaction raises the limit by
1/limit, until it reaches ``idle_per_destination`` and is forgotten. Two nodes of one
member sending to one peer each learn their part of the peer's share this way. A session
handed to a waiting message is one the pool would have parked: checked, clean, reusable.

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
from collections import deque
from dataclasses import dataclass

from aiosmtplib import (
    SMTP,
    SMTPConnectResponseError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
)

from securemail.relay.client import Destination, open_session, quit_session, relay_error
from securemail.relay.transaction import mail_steps
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
    ``busy_seconds``: how long a message waits for a session once the Destination refused
    a new one as busy (or while it is at its lowered limit), before one last attempt.
    """

    idle_per_destination: int = 4
    messages_per_session: int = 100
    idle_seconds: float = 5.0
    busy_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.idle_per_destination < 0:
            raise ValueError("idle_per_destination must not be negative")
        if self.messages_per_session < 1:
            raise ValueError("messages_per_session must be at least 1")
        if self.idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        if self.busy_seconds < 0:
            raise ValueError("busy_seconds must not be negative")


class _StaleSessionError(Exception):
    """A parked session failed on its first command: the peer had closed it."""


class _PeerBusyError(Exception):
    """The peer refused a new session as busy: ``refusal`` (421 to MAIL) or the cause."""

    def __init__(self, refusal: dict[str, Reply] | None = None) -> None:
        super().__init__()
        self.refusal = refusal


class _Flow:
    """One Destination's sessions in use and what the peer allows (mutable by design).

    ``active``: sessions opening or in a transaction (parked ones are the pool's ``_idle``);
    ``limit``: the most sessions the peer took lately (None: not limited); ``waiters``:
    messages waiting for a session, each given one (or None: a slot came free).
    """

    __slots__ = ("active", "limit", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.limit: float | None = None
        self.waiters: deque[asyncio.Future[_Session | None]] = deque()


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
        self._flows: dict[Destination, _Flow] = {}
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
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # set once the message has to wait for a session
        try:
            while True:
                session = self._take(dest)
                if session is None and (deadline is not None or self._full(dest)):
                    if deadline is None:
                        deadline = loop.time() + self.limits.busy_seconds
                    session = await self._wait(dest, deadline)
                if session is not None:
                    try:
                        return await self._use(dest, session, mail_from, wanted, body)
                    except _StaleSessionError:
                        log.debug(
                            "parked session to %s:%d was closed; opening a new one",
                            dest.host,
                            dest.port,
                        )
                try:
                    return await self._use(dest, await self._open(dest), mail_from, wanted, body)
                except _PeerBusyError as busy:
                    self._lower(dest)
                    if deadline is None:
                        deadline = loop.time() + self.limits.busy_seconds
                    elif loop.time() >= deadline:  # waited enough: the queue's deferral
                        if busy.refusal is not None:
                            return busy.refusal
                        raise busy.__cause__ or busy from None
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
        if found is not None:
            self._flow(dest).active += 1
        return found

    def _flow(self, dest: Destination) -> _Flow:
        flow = self._flows.get(dest)
        if flow is None:
            flow = self._flows[dest] = _Flow()
        return flow

    def _full(self, dest: Destination) -> bool:
        """Whether ``dest`` has as many sessions open as the peer took lately."""
        flow = self._flows.get(dest)
        if flow is None or flow.limit is None:
            return False
        return flow.active + self.idle(dest) >= int(flow.limit)

    def _lower(self, dest: Destination) -> None:
        """The peer refused a new session as busy: allow only as many as are open now."""
        flow = self._flow(dest)
        limit = max(1, flow.active + self.idle(dest))
        if flow.limit is None or limit < int(flow.limit):
            log.info(
                "peer %s:%d is busy: at most %d sessions to it for now", dest.host, dest.port, limit
            )
        flow.limit = limit if flow.limit is None else min(flow.limit, limit)

    def _raise_limit(self, dest: Destination) -> None:
        """A transaction went through: the limit grows by 1/limit, up to the idle limit."""
        flow = self._flows.get(dest)
        if flow is None or flow.limit is None:
            return
        flow.limit += 1 / flow.limit
        if flow.limit >= max(1, self.limits.idle_per_destination):
            flow.limit = None
            self._forget(dest)

    async def _wait(self, dest: Destination, deadline: float) -> _Session | None:
        """A session handed over by a transaction that ended, or None: a slot came free, or
        ``deadline`` (the loop's clock) passed."""
        waiter: asyncio.Future[_Session | None] = asyncio.get_running_loop().create_future()
        flow = self._flow(dest)
        flow.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter
        except TimeoutError:
            return self._unclaimed(dest, waiter)
        except BaseException:
            session = self._unclaimed(dest, waiter)
            if session is not None and not self._pass_on(dest, session):
                session.client.close()  # handed over as this task was cancelled
                self._gone(dest)
            raise

    def _unclaimed(
        self, dest: Destination, waiter: asyncio.Future[_Session | None]
    ) -> _Session | None:
        """Stop waiting; what was handed to ``waiter`` meanwhile, if anything."""
        flow = self._flow(dest)
        if waiter in flow.waiters:
            flow.waiters.remove(waiter)
        if waiter.done() and not waiter.cancelled():
            return waiter.result()
        waiter.cancel()
        return None

    def _next_waiter(self, dest: Destination) -> asyncio.Future[_Session | None] | None:
        flow = self._flows.get(dest)
        while flow is not None and flow.waiters:
            waiter = flow.waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    async def _open(self, dest: Destination) -> _Session:
        """A new session, counted as active; _PeerBusyError for a 421 to the greeting."""
        self._flow(dest).active += 1
        try:
            return _Session(await open_session(dest))
        except SMTPConnectResponseError as exc:
            self._gone(dest, freed=False)
            if exc.code == 421:
                raise _PeerBusyError from exc
            raise
        except BaseException:
            self._gone(dest, freed=False)
            raise

    def _gone(self, dest: Destination, *, freed: bool = True) -> None:
        """An active session was closed. If the peer had taken it (``freed``), a waiting
        message may open one in its place; a refused one frees nothing there, and waking a
        waiter for it would only make the next refusal at once."""
        self._flow(dest).active -= 1
        waiter = self._next_waiter(dest) if freed else None
        if waiter is not None:
            waiter.set_result(None)
        self._forget(dest)

    def _forget(self, dest: Destination) -> None:
        flow = self._flows.get(dest)
        if flow is not None and not flow.active and not flow.waiters and flow.limit is None:
            del self._flows[dest]

    async def _use(
        self, dest: Destination, session: _Session, mail_from: str, wanted: list[str], body: bytes
    ) -> dict[str, Reply]:
        """Run the transaction; pass the session on or close it after, close it on failure."""
        try:
            results = await _run(session, mail_from, wanted, body)
        except BaseException as exc:
            session.client.close()
            self._gone(dest, freed=not isinstance(exc, _PeerBusyError))
            raise
        session.messages += 1
        # Any refusal may have left a transaction open (MAIL accepted, every RCPT refused):
        # RSET before the next one is cheap and needs no finer bookkeeping.
        session.needs_rset = not all(reply.ok for reply in results.values())
        self._raise_limit(dest)
        if not self._pass_on(dest, session):
            try:
                await quit_session(session.client)
            finally:
                self._gone(dest)
        return results

    def _pass_on(self, dest: Destination, session: _Session) -> bool:
        """Hand the session to a waiting message, or park it; False: it is to be closed."""
        limits = self.limits
        if (
            self._closed
            or not session.client.is_connected
            or session.messages >= limits.messages_per_session
        ):
            return False
        waiter = self._next_waiter(dest)
        if waiter is not None:
            waiter.set_result(session)  # still active: the waiting transaction takes it
            return True
        if self.idle(dest) >= limits.idle_per_destination:
            return False
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(limits.idle_seconds, self._expire, dest, session)
        self._idle.setdefault(dest, []).append(session)
        self._flow(dest).active -= 1
        self._forget(dest)
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
    mail = mail_steps(client, mail_from, wanted, body)
    try:
        if session.needs_rset:
            await client.rset()
        refusal = await mail.start()
    except (SMTPServerDisconnected, SMTPResponseException) as exc:
        if session.messages:
            raise _StaleSessionError from exc
        raise
    if refusal is None:
        return await mail.finish()
    if not client.is_connected:  # a 421 to MAIL closed the session
        if session.messages:  # the peer's own idle timeout crossed our MAIL
            raise _StaleSessionError
        raise _PeerBusyError(refusal)  # a new session refused: the door's share is taken
    return refusal


def _cancel_expiry(session: _Session) -> None:
    if session.expiry is not None:
        session.expiry.cancel()
        session.expiry = None
