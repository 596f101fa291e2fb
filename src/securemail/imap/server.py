"""The IMAP server for hosted mailboxes: pymap's IMAP4rev1 on a STARTTLS and a TLS port.

Theory of operation: pymap parses and answers IMAP (``IMAPConnection`` and its state
machine); this module only builds its settings and listeners explicitly, without pymap's
command-line plugin registry. Capabilities after login are pymap's: ``IDLE``, ``UIDPLUS``,
``MOVE``, ``MULTIAPPEND``, ``BINARY``, ``CHILDREN``, ``OBJECTID`` and ``APPENDLIMIT``, and
ours (:mod:`securemail.imap.extensions`): ``SPECIAL-USE``, ``NAMESPACE`` and ``QUOTA``. On
the plain port the greeting offers ``STARTTLS`` and ``LOGINDISABLED`` with no ``AUTH=``
(RFC 3501 §6.2.3, RFC 8314 §3), also to clients on the loopback interface, which pymap
would otherwise trust; after STARTTLS, and from the start on the implicit-TLS port (RFC 8314
§3.2), ``LOGIN`` and ``AUTHENTICATE PLAIN`` work. Mailbox I/O runs on the caller's event
loop (pymap's asyncio mode), so IDLE costs a timer, not a thread; the price is that a very
large mailbox's scan briefly holds up the loop.

Security: every byte from the client is untrusted and is parsed by pymap; no command other
than CAPABILITY, NOOP, ID, LOGOUT and STARTTLS is served before TLS and login. Logins go
through :mod:`securemail.imap.login`. APPEND is limited to ``max_append`` octets; a client
that stays silent past :class:`ImapLimits` (60 s before login, 30 minutes after) is logged
out, and connections beyond ``max_connections`` get ``* BYE`` at once.
"""

from __future__ import annotations

import asyncio
import ssl
from argparse import Namespace
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass

from proxyprotocol.sock import SocketInfoLocal
from proxyprotocol.version import ProxyProtocolVersion
from pymap.concurrent import Subsystem
from pymap.config import BackendCapability, IMAPConfig
from pymap.context import connection_exit, subsystem
from pymap.imap import IMAPConnection
from pymap.imap.state import ConnectionState
from pymap.parsing.command import Command
from pymap.parsing.commands import Commands
from pymap.parsing.response import CommandResponse, ResponseOk
from pysasl import SASLAuth
from pysasl.hashing import BuiltinHash
from pysasl.mechanism.plain import PlainMechanism

from securemail.accounts.model import Authenticator
from securemail.deliver.seal import MailboxSeal
from securemail.imap import extensions
from securemail.imap.login import AccountLogin, MaildirFor

_MAX_APPEND = 50 * 2**20  # octets per APPENDed message
_CLOSE_WAIT = 5.0  # seconds for open sessions to end once their sockets are closed


@dataclass(frozen=True)
class ImapLimits:
    """What one client may hold: sessions at once, and how long it may stay silent.

    ``idle`` is the autologout of a logged-in client (RFC 3501 §5.4: at least 30 minutes;
    IDLE clients re-issue IDLE within 29). ``login`` is the wait for a client that has not
    logged in yet: it costs a connection slot and proves nothing.
    """

    max_connections: int = 500
    login: float = 60.0
    idle: float = 30 * 60.0


@dataclass(frozen=True)
class ImapServer:
    """A running IMAP server: the ports it is bound to (None if not configured)."""

    port: int | None
    tls_port: int | None
    _servers: tuple[asyncio.Server, ...]
    _connections: _Connections

    async def close(self) -> None:
        """Stop listening and end every open session (each sees its socket close)."""
        for server in self._servers:
            server.close()
        await self._connections.close()
        for server in self._servers:
            await server.wait_closed()


async def start_imap(
    authenticator: Authenticator,
    maildir_for: MaildirFor,
    tls: ssl.SSLContext,
    *,
    listen: tuple[str, int] | None = None,
    tls_listen: tuple[str, int] | None = None,
    name: str = "SecureMail",
    max_append: int = _MAX_APPEND,
    limits: ImapLimits = ImapLimits(),
    seal: MailboxSeal,
) -> ImapServer:
    """Serve IMAP on ``listen`` (STARTTLS) and/or ``tls_listen`` (implicit TLS).

    ``tls`` is the server context (certificate and key loaded); ``maildir_for`` maps an
    account's primary address to its Maildir; ``seal`` is the node's mailbox seal, which
    decides which messages may show ``$SecureMail`` (:mod:`securemail.imap.folders`). Port 0
    picks a free port (see the handle).
    """
    if listen is None and tls_listen is None:
        raise ValueError("start_imap needs listen or tls_listen")
    config = _Settings(tls, name, max_append)
    connections = _Connections(
        AccountLogin(authenticator, maildir_for, config, seal), config, limits
    )
    servers: list[asyncio.Server] = []
    try:
        if listen is not None:
            servers.append(await asyncio.start_server(connections.plain, *listen))
        if tls_listen is not None:
            servers.append(await asyncio.start_server(connections.tls, *tls_listen, ssl=tls))
    except BaseException:
        for server in servers:
            server.close()
        raise
    ports = iter(s.sockets[0].getsockname()[1] for s in servers)
    return ImapServer(
        next(ports) if listen is not None else None,
        next(ports) if tls_listen is not None else None,
        tuple(servers),
        connections,
    )


class _Settings(IMAPConfig):
    """pymap's settings, built directly: TLS, PLAIN only, no password hashing of its own."""

    def __init__(self, tls: ssl.SSLContext, name: str, max_append: int) -> None:
        super().__init__(
            Namespace(),
            host=None,
            port=0,
            ssl_context=tls,
            tls_enabled=True,
            hash_context=BuiltinHash(),  # unused: the Authenticator checks secrets
            cpu_subsystem=Subsystem.for_asyncio(),
            proxy_protocol=ProxyProtocolVersion.get(None),
            reject_dnsbl=False,
            max_append_len=max_append,
        )
        self._name = name
        self._commands = extensions.commands()

    @property
    def commands(self) -> Commands:
        return self._commands

    @property
    def login_capability(self) -> list[bytes]:
        return [*super().login_capability, *extensions.CAPABILITIES]

    @property
    def backend_capability(self) -> BackendCapability:
        return BackendCapability(idle=True, object_id=True, multi_append=True)

    @property
    def tls_auth(self) -> SASLAuth:
        return SASLAuth([PlainMechanism()])

    @property
    def greeting(self) -> bytes:
        return f"{self._name} IMAP ready".encode("ascii", "replace")


class _State(extensions.ExtensionsMixin, ConnectionState):
    """pymap's connection state, with login only over TLS, loopback included, and the
    answers of :mod:`securemail.imap.extensions`."""

    def __init__(self, login: AccountLogin, config: _Settings, *, implicit_tls: bool) -> None:
        super().__init__(login, config)
        if implicit_tls:
            self.auth = config.tls_auth
            self._capability.remove(b"STARTTLS")

    @property
    def logged_in(self) -> bool:
        return self._session is not None  # pymap sets it at a successful login

    async def do_greeting(self) -> CommandResponse:
        return ResponseOk(b"*", self.config.greeting, self.capability)


class _TimedConnection(IMAPConnection):
    """pymap's connection, logged out (``* BYE``) when the client stays silent too long."""

    limits: ImapLimits

    async def read_command(self, state: ConnectionState) -> Command:
        logged_in = isinstance(state, _State) and state.logged_in
        try:
            async with asyncio.timeout(self.limits.idle if logged_in else self.limits.login):
                return await super().read_command(state)
        except TimeoutError:
            self.writer.write(b"* BYE Autologout; idle for too long\r\n")
            raise EOFError from None  # pymap's run() ends the session on EOF


class _Connections:
    """The ``asyncio.start_server`` callbacks: one pymap connection per client, tracked."""

    def __init__(self, login: AccountLogin, config: _Settings, limits: ImapLimits) -> None:
        self._login, self._config, self._limits = login, config, limits
        self._open: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def plain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, implicit_tls=False)

    async def tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, implicit_tls=True)

    async def close(self) -> None:
        for writer in self._open.values():
            writer.close()
        if self._open:
            await asyncio.wait(self._open, timeout=_CLOSE_WAIT)
        for task in self._open:
            task.cancel()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, implicit_tls: bool
    ) -> None:
        if len(self._open) >= self._limits.max_connections:
            writer.write(b"* BYE Too many connections, try again later\r\n")
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 (start_server runs each client in a task)
        self._open[task] = writer
        subsystem.set(self._config.subsystem)
        info = SocketInfoLocal(writer)
        connection = _TimedConnection(self._config.commands, self._config, reader, writer, info)
        connection.limits = self._limits
        state = _State(self._login, self._config, implicit_tls=implicit_tls)
        try:
            async with AsyncExitStack() as stack:
                connection_exit.set(stack)
                stack.enter_context(closing(connection))
                await connection.run(state)
        finally:
            del self._open[task]
