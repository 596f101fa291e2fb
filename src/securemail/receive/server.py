"""The SMTP session every listener shares: aiosmtpd's protocol, run in the current event loop.

Theory of operation: :func:`start_listener` binds ``loop.create_server`` to a factory of
:class:`_Session` (an aiosmtpd ``SMTP`` subclass, one per connection). aiosmtpd reads the
commands; :mod:`securemail.receive.data` reads DATA in blocks with the result aiosmtpd's own
line loop gives, :mod:`securemail.receive.path` the plain MAIL/RCPT path, and
:mod:`securemail.receive.commands` holds the tables aiosmtpd would build by introspection on
every connection. The handler hooks call :class:`securemail.receive.conversation
.Conversation`, which applies the checks common to every listener and then the listener's
:class:`securemail.receive.conversation.Gate`. This module adds what aiosmtpd leaves to
its user: a cap on concurrent sessions, a gate before the greeting, the path exactly as the
client wrote it, enhanced status codes on aiosmtpd's own refusals, 421 on idle timeout, an
AUTH check that is awaited (aiosmtpd's own hook is synchronous), implicit TLS (port 465)
and PIPELINING (RFC 2920): the replies to RSET, MAIL, RCPT and the end of DATA are held
while the client's next command is already in the input buffer, and go out with the
first reply that does not wait (at the latest the one that ends the group: 354, the 220 of
STARTTLS, AUTH's 334, 221, any other command's, a 421), so a pipelined group gets its
replies in one write, one TLS record. A reply is never held while the session would wait
for input (§3.2), nor across the TLS switch or a close.
It also keeps the listener's :class:`~securemail.receive.door.Door`: per-source and
per-member session limits, TLS-handshake, pre-MAIL and whole-session deadlines, and on stop
drops every session not in the middle of DATA at once (a transfer gets the drain deadline).
A gate that identifies members (the peer listener) is asked at the first MAIL, with the TLS
client certificate the handshake verified: no certificate is 530 5.7.0, one that is not a
member's 550 5.7.1, and the session ends there.

Security: every byte from the client is untrusted. DATA ends only at CRLF.CRLF
(receive.data, checked against aiosmtpd's loop) and aiosmtpd drops plaintext pipelined
after STARTTLS (RFC 3207 §4.2); the tests in tests/receive prove both. A session never
holds more than ``max_message_size`` octets of DATA (and one line and one block), and a
slow client is cut off after ``timeout`` seconds without a complete command. Held
replies are bounded by the commands already read (the input buffer), and every reply
before STARTTLS's 220 goes out with it, in plaintext, before the switch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, login_always_fail, syntax

from securemail.receive.commands import CommandTable, bind, command_table
from securemail.receive.conversation import (
    Conversation,
    Gate,
    LogIn,
    Proved,
    client_certificate,
    client_ip,
    log_refusal,
)
from securemail.receive.data import Body, Verdict, read_data
from securemail.receive.door import at_limit
from securemail.receive.model import Admit, ListenerSettings, ReceiveReason
from securemail.receive.path import as_written, plain_path
from securemail.replies import Reply

log = logging.getLogger("securemail.receive")
_aiosmtpd_log = logging.getLogger("mail.log")  # aiosmtpd's own logger

_IDENT = "ESMTP SecureMail"  # the greeting does not name the software version

# aiosmtpd's own refusals, given RFC 3463 enhanced status codes and a reason for the log.
_BUILTIN_REPLIES = {
    "530 Must issue a STARTTLS command first": Reply(
        530,
        "5.7.0",
        "Must issue a STARTTLS command first",
        ReceiveReason.TLS_REQUIRED,
        "command before STARTTLS",
    ),
    "552 Error: Too much mail data": Reply(
        552, "5.3.4", "Message too big", ReceiveReason.TOO_BIG, "DATA above the size limit"
    ),
    "552 Error: message size exceeds fixed maximum message size": Reply(
        552, "5.3.4", "Message too big", ReceiveReason.TOO_BIG, "SIZE= above the size limit"
    ),
    # RFC 5321 §4.5.3.1.6 (1000 octets with CRLF) and §4.5.3.1.9 ("500 Line too long").
    "500 Line too long (see RFC5321 4.5.3.1.6)": Reply(
        500, "5.5.2", "Line too long", ReceiveReason.LINE_TOO_LONG, "DATA line over 1000 octets"
    ),
    "500 Command line too long": Reply(
        500, "5.5.2", "Line too long", ReceiveReason.LINE_TOO_LONG, "command line too long"
    ),
    # RFC 6531: status 5.6.7, non-ASCII address where SMTPUTF8 was not offered.
    "500 Error: strict ASCII mode": Reply(
        553,
        "5.6.7",
        "Non-ASCII text requires SMTPUTF8",
        ReceiveReason.BAD_ADDRESS,
        "non-ASCII command argument",
    ),
}


# aiosmtpd's replies to a transfer over a limit (given codes by _BUILTIN_REPLIES).
_DATA_REFUSALS = {
    Verdict.LINE_TOO_LONG: "500 Line too long (see RFC5321 4.5.3.1.6)",
    Verdict.TOO_MUCH: "552 Error: Too much mail data",
}

_GRANTED = "235 2.7.0 Authentication successful"  # RFC 4954 §6


async def _check(log_in: LogIn, ip: str, offered: LoginPassword) -> Proved | Reply:
    try:
        user = offered.login.decode("utf-8")
    except UnicodeDecodeError:
        text = "Authentication credentials invalid"  # as for a wrong password
        return Reply(535, "5.7.8", text, ReceiveReason.AUTH_FAILED, "user name is not UTF-8")
    return await log_in(ip, user, offered.password)


class _Session(SMTP):
    """One SMTP connection: aiosmtpd's protocol with the listener's limits and gate."""

    def __init__(
        self,
        conversation: Conversation,
        settings: ListenerSettings,
        live: set[_Session],
        implicit_tls: bool,
        table: CommandTable,
    ) -> None:
        self._init_smtp(conversation, settings, implicit_tls, table)
        self._conversation = conversation
        self._max_sessions = settings.max_connections
        self._door = settings.door
        self._live = live
        self._implicit_tls = implicit_tls
        self._offered: LoginPassword | None = None
        self._replies: list[bytes] = []  # held for the rest of a pipelined group, in order
        self._in_group = False  # the reply being made may wait for the group's next command
        self._idle_deadline = 0.0  # loop time after which an idle session gets 421
        self.source: str | None = None  # the client's IP address, once connected
        self.member: str | None = None  # the member its client certificate names, once known
        self.admitted = False  # let in at connect (counts against the limits)
        self.in_data = False  # a DATA transfer (and its admission) is in progress
        self._mail_seen = False  # a MAIL command was accepted in this session
        self._deadlines: list[asyncio.TimerHandle] = []

    def _init_smtp(
        self,
        conversation: Conversation,
        settings: ListenerSettings,
        implicit_tls: bool,
        table: CommandTable,
    ) -> None:
        """What aiosmtpd 1.4.6's ``SMTP.__init__`` does with the arguments this listener
        gives it, but with the introspected tables from ``table`` (built once per listener)
        instead of walking the class on every connection.

        With implicit TLS (RFC 8314 §3.3) the socket is TLS from the first byte: no
        STARTTLS inside it, and AUTH needs no further TLS.
        """
        self.__ident__ = _IDENT
        self.loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit)
        asyncio.StreamReaderProtocol.__init__(
            self, reader, client_connected_cb=self._cb_client_connected, loop=self.loop
        )
        self.event_handler = conversation
        self.data_size_limit = settings.max_message_size
        self.enable_SMTPUTF8 = False
        self._decode_data = False
        # aiosmtpd keeps these limits in one dict shared by every session and grows it on
        # each EHLO; each session gets its own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.hostname = settings.hostname
        self.tls_context = tls = None if implicit_tls else settings.tls
        if tls is not None:
            if tls.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}:
                _aiosmtpd_log.warning(
                    "tls_context.verify_mode not in {CERT_NONE, CERT_OPTIONAL}; "
                    "this might cause client connection problems"
                )
            elif tls.check_hostname:
                _aiosmtpd_log.warning(
                    "tls_context.check_hostname == True; "
                    "this might cause client connection problems"
                )
        self.require_starttls = tls and conversation.gate.requires_tls
        self._timeout_duration = settings.timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = not implicit_tls
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        excluded = () if conversation.gate.log_in else ("LOGIN", "PLAIN")
        self._smtp_methods, self._auth_methods, self._handle_hooks = bind(table, self, excluded)
        if _aiosmtpd_log.isEnabledFor(logging.INFO):
            names = (
                m + "(builtin)" if a.is_builtin else m
                for m, a in sorted(self._auth_methods.items())
            )
            _aiosmtpd_log.info("Available AUTH mechanisms: " + " ".join(names))
        self._ehlo_hook_ver = table.ehlo_hook_version
        self._enforce_call_limit = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._implicit_tls and self.session is not None:
            # aiosmtpd fills session.ssl only after STARTTLS; here TLS came first.
            names = ("ssl_object", "peercert", "cipher")
            self.session.ssl = {name: transport.get_extra_info(name) for name in names}
        self.source = client_ip(self.session)
        self._live.add(self)
        self._start_deadlines()

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        for handle in self._deadlines:
            handle.cancel()
        super().connection_lost(error)

    def _start_deadlines(self) -> None:
        door, later = self._door, self.loop.call_later
        if door.handshake_timeout is not None and self._conversation.gate.requires_tls:
            self._deadlines.append(later(door.handshake_timeout, self._handshake_deadline))
        if door.pre_mail_timeout is not None:
            self._deadlines.append(later(door.pre_mail_timeout, self._pre_mail_deadline))
        if door.max_session is not None:
            self._deadlines.append(later(door.max_session, self._session_deadline))

    def _handshake_deadline(self) -> None:
        if not self._tls_up():
            detail = f"no TLS within {self._door.handshake_timeout} s"
            self._drop(ReceiveReason.TLS_HANDSHAKE_TIMEOUT, detail)

    def _pre_mail_deadline(self) -> None:
        if not self._mail_seen:
            detail = f"no MAIL within {self._door.pre_mail_timeout} s"
            self._drop(ReceiveReason.PRE_MAIL_TIMEOUT, detail)

    def _session_deadline(self) -> None:
        if self.in_data:  # let the transfer finish (the DATA timeout still bounds it)
            self._deadlines.append(self.loop.call_later(1.0, self._session_deadline))
            return
        self._drop(ReceiveReason.SESSION_TOO_LONG, f"session over {self._door.max_session} s")

    def _tls_up(self) -> bool:
        return self._implicit_tls or (
            self._tls_protocol is not None and bool(self.session is not None and self.session.ssl)
        )

    def _drop(self, reason: ReceiveReason, detail: str) -> None:
        """421 4.4.2 (RFC 5321 §3.8: the server may close with 421), then close."""
        reply = Reply(421, "4.4.2", "Timeout, closing connection", reason, detail)
        log_refusal(self._conversation.gate.listener, self.source or "?", reply)
        if self.transport is not None:
            self._replies.append(reply.line().encode("ascii"))
            self.write_held()
            self.transport.close()

    def _refusal_at_connect(self) -> Reply | None:
        """Count only sessions already let in: in a burst, every new connection is live
        before the first is greeted, and counting those would refuse them all."""
        admitted = [session.source for session in self._live if session.admitted]
        if len(admitted) >= self._max_sessions:
            detail = f"more than {self._max_sessions} sessions"
            text = "Too many connections, try again later"
            return Reply(421, "4.7.0", text, ReceiveReason.TOO_MANY_CONNECTIONS, detail)
        if at_limit(admitted, self.source, self._door.per_source):
            detail = f"more than {self._door.per_source} sessions from {self.source}"
            text = "Too many connections from your address, try again later"
            return Reply(421, "4.7.0", text, ReceiveReason.TOO_MANY_CONNECTIONS, detail)
        refusal = self._conversation.gate.refuse_client(client_ip(self.session))
        self.admitted = refusal is None
        return refusal

    async def smtp_MAIL(self, arg: str) -> None:  # noqa: N802 (aiosmtpd's command method)
        """MAIL, once the gate knows which member the client is (if the gate asks)."""
        refusal = self._refuse_member()
        if refusal is not None:
            log_refusal(self._conversation.gate.listener, self.source or "?", refusal)
            await self.push(refusal.line())
            if self.transport is not None:
                self.transport.close()
            return
        await self._grouped(super().smtp_MAIL(arg))
        self._mail_seen = self._mail_seen or (
            self.envelope is not None and self.envelope.mail_from is not None
        )

    def _refuse_member(self) -> Reply | None:
        member_of = self._conversation.gate.member_of
        if member_of is None or self.member is not None:
            return None
        certificate = client_certificate(self.session)
        if certificate is None:
            text = "Client certificate required"
            detail = "no TLS client certificate"
            return Reply(530, "5.7.0", text, ReceiveReason.CLIENT_CERTIFICATE_REQUIRED, detail)
        member = member_of(certificate)
        if member is None:
            detail = "the client certificate's key is no member's in the directory"
            return Reply(550, "5.7.1", "Not a member", ReceiveReason.NOT_A_MEMBER, detail)
        if at_limit([s.member for s in self._live], member, self._door.per_member):
            detail = f"more than {self._door.per_member} sessions of member {member}"
            text = "Too many connections, try again later"
            return Reply(421, "4.7.0", text, ReceiveReason.TOO_MANY_CONNECTIONS, detail)
        self.member = member
        return None

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 (aiosmtpd's command method)
        self.in_data = True
        try:
            await self._data(arg)
        finally:
            self.in_data = False

    async def _data(self, arg: str) -> None:
        """aiosmtpd 1.4.6's ``smtp_DATA``, the transfer read in blocks (receive.data)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if self.envelope is None or not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        body = Body(self.data_size_limit, self.line_length_limit)
        try:
            await read_data(self._reader, body)
        except asyncio.CancelledError:
            _aiosmtpd_log.info("Connection lost during DATA")
            self._writer.close()
            raise
        if body.verdict is not Verdict.OK:
            await self._grouped(self.push(_DATA_REFUSALS[body.verdict]))
            self.envelope = self._create_envelope()
            return
        self.envelope.content = self.envelope.original_content = body.content()
        status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()
        # RFC 2920 §3.1: the message may be the first "command" of the next group.
        await self._grouped(self.push("250 OK" if status is MISSING else status))

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")  # as aiosmtpd's
    async def smtp_RCPT(self, arg: str) -> None:  # noqa: N802 (aiosmtpd's command method)
        await self._grouped(super().smtp_RCPT(arg))

    @syntax("RSET")  # as aiosmtpd's, for HELP
    async def smtp_RSET(self, arg: str) -> None:  # noqa: N802 (aiosmtpd's command method)
        await self._grouped(super().smtp_RSET(arg))

    async def _grouped(self, command: Awaitable[None]) -> None:
        """Run a command whose reply may wait for the rest of its pipelined group: RFC 2920
        §3.2 lets a server buffer the replies to RSET, MAIL and RCPT (and the message's,
        which may start a group) and send them as a unit."""
        self._in_group = True
        try:
            await command
        finally:
            self._in_group = False

    async def _handle_client(self) -> None:
        refusal = self._refusal_at_connect()
        if refusal is None:
            await super()._handle_client()
            return
        await self.push(refusal.line())
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: AnyStr) -> None:
        """Send one reply (and those held before it), or hold it while it may wait."""
        builtin = _BUILTIN_REPLIES.get(status) if isinstance(status, str) else None
        if builtin is not None:
            log_refusal(self._conversation.gate.listener, client_ip(self.session), builtin)
            status = builtin.line()
        self._replies.append(status.encode("ascii") if isinstance(status, str) else status)
        if self._in_group and self._command_waiting():
            return  # the next command is read without waiting: its reply goes with this one
        self.write_held()
        await self._writer.drain()

    def _command_waiting(self) -> bool:
        """Whether the client's next command line is already in the input buffer, so the
        session will read it without waiting (aiosmtpd reads commands up to LF)."""
        return b"\n" in self._reader._buffer  # type: ignore[attr-defined]

    def write_held(self) -> None:
        """Write the replies held so far, in one write (the in-flow pause calls this
        before it waits, so a pause never holds replies already due)."""
        if self._replies:
            self._writer.write(b"\r\n".join(self._replies) + b"\r\n")
            self._replies = []

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        """Keep what aiosmtpd's AUTH PLAIN/LOGIN decoded, for :meth:`_log_in` to check.

        aiosmtpd calls its ``authenticator`` hook synchronously; a password hash there would
        stop every session of the loop. The check is awaited in :meth:`_log_in` instead.
        """
        self._offered = auth_data if isinstance(auth_data, LoginPassword) else None
        return AuthResult(success=False, handled=True)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._log_in("PLAIN", await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._log_in("LOGIN", await super().auth_LOGIN(_, args))

    async def _log_in(self, mechanism: str, decoded: AuthResult) -> AuthResult:
        """The gate's answer to the credentials aiosmtpd decoded, as the reply to AUTH."""
        offered, self._offered = self._offered, None
        log_in = self._conversation.gate.log_in
        if offered is None or log_in is None:
            return decoded  # aiosmtpd already answered: bad base64, or "*" from the client
        listener, ip = self._conversation.gate.listener, client_ip(self.session)
        outcome = await _check(log_in, ip, offered)
        if isinstance(outcome, Reply):
            log_refusal(listener, ip, outcome)
            return AuthResult(success=False, handled=False, message=outcome.line())
        log.info("%s %s AUTH %s granted to %r", listener, ip, mechanism, outcome.user)
        return AuthResult(success=True, auth_data=outcome, message=_GRANTED)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The path as the client wrote it (see :mod:`securemail.receive.path`)."""
        plain = plain_path(arg)
        if plain is not None:
            return plain
        return as_written(arg, *super()._getaddr(arg))

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd's idle timer (restarted by every valid command) without a new timer per
        command: the deadline moves, and the one timer, if it fires before the deadline
        it was set for, is set again for the rest."""
        self._idle_deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > self._idle_deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_timer)

    def _idle_timer(self) -> None:
        handle = self._timeout_handle
        if handle is not None and self._idle_deadline > handle.when():
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_timer)
            return
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        """No complete command within the timeout (RFC 5321 §4.5.3.2.7): 421, then close."""
        self._drop(ReceiveReason.TIMEOUT, "idle")

    def abort(self) -> asyncio.Task[None] | None:
        """Drop the connection now; the task serving it, to wait for, if it still runs.

        Any transport with ``abort``: uvloop's TCP transport is no asyncio.WriteTransport,
        and skipping it left plain-text sessions (relay, submission, a peer before
        STARTTLS) holding the node open on SIGTERM for as long as the client sent NOOPs.
        """
        abort: Callable[[], None] | None = getattr(self.transport, "abort", None)
        if abort is not None:
            abort()
        return self._handler_coroutine


class Listener:
    """A running listener: ``port`` is the bound port; ``close()`` ends it and its sessions."""

    def __init__(self, server: asyncio.Server, live: set[_Session], drain: float) -> None:
        self._server = server
        self._live = live
        self._drain = drain
        self.port: int = server.sockets[0].getsockname()[1]

    @property
    def serving(self) -> bool:
        """Whether the listener still accepts connections (for the node's readiness)."""
        return self._server.is_serving()

    async def close(self) -> None:
        """Stop accepting; drop every session not in DATA now, the others once their DATA
        is done or the drain deadline has passed; wait until their tasks have ended."""
        self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._drain
        tasks: set[asyncio.Task[None] | None] = set()
        while True:
            tasks.update(s.abort() for s in list(self._live) if not s.in_data)
            if not any(s.in_data for s in self._live) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        tasks.update(session.abort() for session in list(self._live))
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        await self._server.wait_closed()


def _drop_login_data_warning(record: logging.LogRecord) -> bool:
    """aiosmtpd 1.4 warns on every successful AUTH that it sets its own deprecated field."""
    return "Session.login_data is deprecated" not in record.getMessage()


def require_tls_1_2(context: ssl.SSLContext) -> None:
    """Raise the context's minimum to TLS 1.2 (THREATS.md C), leaving a higher one alone."""
    context.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)


async def start_listener(
    settings: ListenerSettings, gate: Gate, admit: Admit, *, implicit_tls: bool = False
) -> Listener:
    """Bind ``settings.host:port`` in the running loop and serve SMTP with ``gate``'s policy.

    With ``implicit_tls`` every connection starts with the TLS handshake (RFC 8314, port
    465) instead of offering STARTTLS; ValueError if ``settings.tls`` is missing then.
    """
    if implicit_tls and settings.tls is None:
        raise ValueError("implicit TLS needs a TLS context")
    if settings.tls is not None:
        require_tls_1_2(settings.tls)
    logging.getLogger("mail.log").addFilter(_drop_login_data_warning)  # a set: added once
    conversation = Conversation(settings, gate, admit)
    live: set[_Session] = set()
    table = command_table(_Session, conversation)
    server = await asyncio.get_running_loop().create_server(
        lambda: _Session(conversation, settings, live, implicit_tls, table),
        settings.host,
        settings.port,
        ssl=settings.tls if implicit_tls else None,
        ssl_handshake_timeout=settings.timeout if implicit_tls else None,
    )
    return Listener(server, live, settings.door.drain_deadline)
