"""Delivery to the organisation's own mail store over SMTP or LMTP (RFC 2033).

Theory of operation: greeting; EHLO (LHLO for LMTP); STARTTLS when configured, verified
against ``cafile`` or the system store and the host name (presenting a client certificate
when one is configured), then EHLO/LHLO again; AUTH PLAIN (RFC 4954, RFC 4616) when a user
is configured, only over that TLS; MAIL; one
RCPT per recipient; DATA once for those accepted. SMTP answers the body once for all;
LMTP answers once per accepted recipient, in RCPT order (RFC 2033 §4.2), so each mailbox
gets its own outcome. The client is a small one on asyncio streams because aiosmtplib has
no LMTP and drops replies it did not ask for.

A store that is down, slow or drops the connection before its final answer yields 451 4.4.0
("downstream-unavailable") for every recipient without a definite answer yet: never an
exception, never a guess. The message key is not used: an SMTP or LMTP store cannot be
asked whether it already holds a message, so a retry after a lost answer may store a
second copy (the store's own duplicate suppression, if any, applies). IMAP keywords are
ignored: SMTP and LMTP have no way to carry them (the store's own rules may file the mail
by the ``X-SecureMail-Status`` marking field instead); so is ``origin``: the store is the
organisation's, and only it can vouch for what it holds.

Security: the store's replies are untrusted (kept only in ``detail``). With STARTTLS
configured, nothing of the envelope and no password is sent before TLS is up (AUTH without
STARTTLS is refused at construction) and the password never appears in a reply's detail;
bytes the server sent before the handshake are discarded (RFC 3207 §4.2, the STARTTLS
injection attack).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Sequence, Set
from dataclasses import dataclass, field

from securemail.deliver.seal import Origin
from securemail.replies import Reply
from securemail.smtpwire.tls import store_context
from securemail.smtpwire.wire import (
    bad_address,
    clean_detail,
    data_payload,
    needs_smtputf8,
    no_smtputf8,
    unsafe_text,
    wire_reply,
)

REFUSED = "downstream-refused"
UNAVAILABLE = "downstream-unavailable"
_LINE_LIMIT = 8192  # bytes per reply line; RFC 5321 §4.5.3.1.5 asks for 512
_MAX_REPLY_LINES = 200
_REPLY_LINE = re.compile(r"([2-5][0-9]{2})([ -]?)(.*)")
_QUIT_TIMEOUT = 10.0


class DownstreamError(Exception):
    """The session cannot go on (bad greeting, no STARTTLS, a malformed reply)."""


# What a broken, slow or hostile store can cause: each ends the session, never the worker.
# (ssl.SSLError is an OSError; IncompleteReadError an EOFError; bad bytes a ValueError.)
_FAILURES = (
    OSError,
    TimeoutError,
    EOFError,
    ValueError,
    asyncio.LimitOverrunError,
    DownstreamError,
)


@dataclass(frozen=True)
class StoreClient:
    """What the node presents to the store: a client certificate and key (the key may be
    encrypted under ``key_password``) and an AUTH user name and password."""

    certificate: str | None = None
    key: str | None = None
    key_password: bytes | None = None
    auth: tuple[str, str] | None = field(default=None, repr=False)


class SmtpTarget:
    """See :class:`securemail.deliver.target.Target`. Not exactly-once (see the module doc)."""

    keeps_one_copy = False  # the store cannot be asked whether it holds a message

    def __init__(
        self,
        host: str,
        port: int,
        *,
        lmtp: bool = False,
        starttls: bool = False,
        cafile: str | None = None,
        helo: str,
        timeout: float = 60.0,
        client: StoreClient | None = None,
    ) -> None:
        if not 0 < port < 65536 or timeout <= 0 or not helo or unsafe_text(helo):
            raise ValueError("SmtpTarget needs a port, a positive timeout and an EHLO name")
        client = client or StoreClient()
        if client.auth is not None and not starttls:
            raise ValueError("AUTH to a store needs STARTTLS: a password is never sent in clear")
        self._host, self._port, self._lmtp = host, port, lmtp
        self._tls = (
            store_context(cafile, client.certificate, client.key, client.key_password)
            if starttls
            else None
        )
        self._helo, self._timeout, self._auth = helo, timeout, client.auth

    async def deliver(
        self,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        key: str,
        *,
        keywords: Set[str] = frozenset(),
        origin: Origin = Origin.DELIVERED,
        fresh: Set[str] = frozenset(),  # nothing to skip: a store is never asked
    ) -> dict[str, Reply]:
        wanted = list(dict.fromkeys(recipients))
        final: dict[str, Reply] = {}  # definite answers only, filled as they arrive
        detail = "no answer"
        session: _Session | None = None
        try:
            session = await _Session.open(self._host, self._port, self._timeout)
            await self._transact(session, mail_from, wanted, body, final)
        except _FAILURES as error:
            detail = clean_detail(f"{self._host}:{self._port}: {type(error).__name__}: {error}")
        finally:
            if session is not None:
                session.close()
        unknown = Reply(451, "4.4.0", "Mail store unavailable", UNAVAILABLE, detail)
        return {rcpt: final.get(rcpt, unknown) for rcpt in wanted}

    async def _transact(
        self,
        session: _Session,
        mail_from: str,
        wanted: list[str],
        body: bytes,
        final: dict[str, Reply],
    ) -> None:
        extensions = await self._hello(session)
        refusal = _envelope_problem(mail_from, wanted, extensions)
        if refusal is not None:
            final.update(dict.fromkeys(wanted, refusal))
            return
        utf8 = needs_smtputf8(mail_from, wanted)
        accepted = await self._envelope(
            session, mail_from, wanted, _options(utf8, body, extensions), final
        )
        if accepted:
            await self._data(session, accepted, body, final)
        await session.quit()

    async def _hello(self, session: _Session) -> frozenset[str]:
        """Greeting, EHLO/LHLO and, if configured, STARTTLS; returns the extensions."""
        session.expect(220, await session.reply())
        extensions = await self._greet(session)
        if self._tls is None:
            return extensions
        if "STARTTLS" not in extensions:
            raise DownstreamError("STARTTLS is configured but not offered")
        session.expect(220, await session.command("STARTTLS"))
        await session.start_tls(self._tls, self._host)
        extensions = await self._greet(session)
        if self._auth is not None:
            await _authenticate(session, self._auth, extensions)
        return extensions

    async def _greet(self, session: _Session) -> frozenset[str]:
        verb = "LHLO" if self._lmtp else "EHLO"
        code, text = await session.command(f"{verb} {self._helo}")
        session.expect(250, (code, text))
        extensions = set()
        for line in text.splitlines()[1:]:
            words = line.upper().split()
            extensions.add(words[0] if words else "")
            if words and words[0] == "AUTH":  # RFC 4954 §3: AUTH mechanism ...
                extensions.update(f"AUTH:{mechanism}" for mechanism in words[1:])
        return frozenset(extensions)

    async def _envelope(
        self,
        session: _Session,
        mail_from: str,
        wanted: list[str],
        options: str,
        final: dict[str, Reply],
    ) -> list[str]:
        """MAIL and RCPTs; refusals go to ``final``; returns the accepted recipients."""
        code, text = await session.command(f"MAIL FROM:<{mail_from}>{options}")
        if code != 250:
            final.update(dict.fromkeys(wanted, wire_reply(code, text, reason=REFUSED)))
            return []
        accepted = []
        for rcpt in wanted:
            if unsafe_text(rcpt):
                final[rcpt] = bad_address("5.1.3", rcpt)
                continue
            code, text = await session.command(f"RCPT TO:<{rcpt}>")
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                final[rcpt] = wire_reply(code, text, reason=REFUSED)
        return accepted

    async def _data(
        self, session: _Session, accepted: list[str], body: bytes, final: dict[str, Reply]
    ) -> None:
        code, text = await session.command("DATA")
        if code != 354:
            final.update(dict.fromkeys(accepted, wire_reply(code, text, reason=REFUSED)))
            return
        await session.send(data_payload(body))
        if not self._lmtp:
            code, text = await session.reply()
            final.update(dict.fromkeys(accepted, wire_reply(code, text, reason=REFUSED)))
            return
        for rcpt in accepted:  # RFC 2033 §4.2: one reply per accepted RCPT, in order
            code, text = await session.reply()
            final[rcpt] = wire_reply(code, text, reason=REFUSED)


async def _authenticate(
    session: _Session, auth: tuple[str, str], extensions: frozenset[str]
) -> None:
    """AUTH PLAIN with an initial response (RFC 4954 §4, RFC 4616), or AUTH LOGIN where the
    store offers only that (Exchange does); 235 or the session ends."""
    user, password = auth
    if "AUTH:PLAIN" in extensions:
        token = _b64("\0" + user + "\0" + password)
        reply = await session.command(f"AUTH PLAIN {token}")
    elif "AUTH:LOGIN" in extensions:
        session.expect(334, await session.command("AUTH LOGIN"))
        session.expect(334, await session.command(_b64(user)))
        reply = await session.command(_b64(password))
    else:
        raise DownstreamError("AUTH is configured but the store offers neither PLAIN nor LOGIN")
    if reply[0] != 235:
        raise DownstreamError(clean_detail(f"AUTH refused: {reply[0]} {reply[1]}"))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _envelope_problem(
    mail_from: str, wanted: list[str], extensions: frozenset[str]
) -> Reply | None:
    if unsafe_text(mail_from):
        return bad_address("5.1.7", mail_from)
    if needs_smtputf8(mail_from, wanted) and "SMTPUTF8" not in extensions:
        return no_smtputf8(REFUSED, mail_from)
    return None


def _options(utf8: bool, body: bytes, extensions: frozenset[str]) -> str:
    options = " SMTPUTF8" if utf8 else ""
    if not body.isascii() and "8BITMIME" in extensions:
        options += " BODY=8BITMIME"  # RFC 6152 §3
    return options


class _Session:
    """One connection: command lines out, replies in; every wait bounded by ``timeout``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self._reader, self._writer, self._timeout = reader, writer, timeout
        self._plain: asyncio.StreamWriter | None = None  # the pre-TLS writer, see start_tls

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> _Session:
        connecting = asyncio.open_connection(host, port, limit=_LINE_LIMIT)
        reader, writer = await asyncio.wait_for(connecting, timeout)
        return cls(reader, writer, timeout)

    async def command(self, line: str) -> tuple[int, str]:
        await self.send(line.encode("utf-8") + b"\r\n")
        return await self.reply()

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await asyncio.wait_for(self._writer.drain(), self._timeout)

    async def reply(self) -> tuple[int, str]:
        return await asyncio.wait_for(self._read_reply(), self._timeout)

    @staticmethod
    def expect(code: int, reply: tuple[int, str]) -> None:
        if reply[0] != code:
            raise DownstreamError(clean_detail(f"expected {code}, got {reply[0]} {reply[1]}"))

    async def start_tls(self, context: ssl.SSLContext, host: str) -> None:
        """Upgrade the connection; a fresh reader drops anything sent before the handshake."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_LINE_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = await loop.start_tls(
            self._writer.transport,
            protocol,
            context,
            server_hostname=host,
            ssl_handshake_timeout=self._timeout,
        )
        if transport is None:
            raise DownstreamError("TLS handshake did not complete")
        protocol.connection_made(transport)
        # The old writer is kept: dropping it would close the socket under TLS (its __del__).
        self._plain = self._writer
        self._reader = reader
        self._writer = asyncio.StreamWriter(transport, protocol, reader, loop)

    async def quit(self) -> None:
        """Say QUIT without waiting for its reply (as Postfix's ``smtp_skip_quit_response``
        does): the outcome is known, and every moment between the store's 250 and the
        queue's record of it is one in which a crash has the message delivered twice."""
        try:
            self._writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self._writer.drain(), min(self._timeout, _QUIT_TIMEOUT))
        except _FAILURES:
            return  # the outcome is known; QUIT is a courtesy

    def close(self) -> None:
        self._writer.close()
        if self._plain is not None:
            self._plain.close()

    async def _read_reply(self) -> tuple[int, str]:
        """One reply, possibly multi-line (RFC 5321 §4.2.1): ``(code, text lines)``."""
        lines: list[str] = []
        for _ in range(_MAX_REPLY_LINES):
            raw = await self._reader.readuntil(b"\n")
            match = _REPLY_LINE.fullmatch(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if match is None:
                raise DownstreamError(clean_detail(f"malformed reply line {raw[:80]!r}"))
            lines.append(match.group(3))
            if match.group(2) != "-":
                return int(match.group(1)), "\n".join(lines)
        raise DownstreamError(f"reply longer than {_MAX_REPLY_LINES} lines")
