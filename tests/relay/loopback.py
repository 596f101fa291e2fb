"""Loopback SMTP and LMTP servers (aiosmtpd on 127.0.0.1, port 0) and a small TLS PKI.

Shared by the relay and delivery tests. Each server runs in the test's own event loop and
is closed when its ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.x509.oid import ExtendedKeyUsageOID

from securemail.directory.model import spki_pin
from securemail.pki.authority import (
    Issued,
    generate_key,
    issue_for_key,
    make_root_ca,
    private_key_pem,
)
from securemail.relay import PeerTls

WAIT = 30.0  # seconds: a bound that only stops a hang, never a slow machine


@dataclass(frozen=True)
class Received:
    """One message as the test server got it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls: bool


@dataclass
class Recorder:
    """An aiosmtpd handler that records what arrives and answers as the test says.

    ``rcpt_replies`` maps an address to its RCPT reply (others get 250); ``data_reply`` is
    the final DATA reply (LMTP: one line per accepted recipient, joined by CRLF);
    ``drop_after_data`` closes the connection instead of answering the final DATA.
    ``connections`` and ``disconnections`` count TCP connections opened and closed (SMTP);
    ``pipelining`` offers PIPELINING (RFC 2920) in EHLO (aiosmtpd reads commands in order
    however they arrive, it only does not say so).
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    mail_reply: str | None = None
    data_reply: str = "250 2.0.0 Ok: queued as Q1234"
    drop_after_data: bool = False
    received: list[Received] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    connections: int = 0
    disconnections: int = 0
    pipelining: bool = False

    async def handle_EHLO(  # noqa: N802 (aiosmtpd hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # this hook replaces aiosmtpd's own bookkeeping
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self.rcpt_replies.get(address, "250 2.1.5 OK")
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        tls = session.ssl is not None
        self.received.append(
            Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), content, tls)
        )
        if self.drop_after_data and isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
        return self.data_reply


class _RecordingSMTP(SMTP):
    """aiosmtpd's server, also keeping every byte received before TLS (if any)."""

    def __init__(self, handler: Recorder, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._recorder = handler
        handler.connections += 1

    def data_received(self, data: bytes) -> None:
        self._recorder.raw.extend(data)
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        self._recorder.disconnections += 1
        super().connection_lost(error)


class _RecordingLMTP(LMTP):
    """aiosmtpd's LMTP server (RFC 2033)."""


@asynccontextmanager
async def serving(
    handler: Recorder,
    *,
    tls: ssl.SSLContext | None = None,
    lmtp: bool = False,
    smtputf8: bool = False,
    port: int = 0,
) -> AsyncIterator[int]:
    """Run a server on 127.0.0.1 (on ``port``, or one the OS picks); yield the port."""
    loop = asyncio.get_running_loop()
    kind = _RecordingLMTP if lmtp else _RecordingSMTP
    options: dict[str, Any] = {"tls_context": tls, "hostname": "test.invalid"}
    options["enable_SMTPUTF8"] = smtputf8
    server = await loop.create_server(lambda: kind(handler, **options), "127.0.0.1", port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A server that accepts connections and never says anything (for timeouts)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True)
class TlsPki:
    """A federation CA with a gateway server certificate, and a stranger from another CA."""

    ca: Issued
    server: Issued
    stranger: Issued
    folder: Path

    def context(self, issued: Issued) -> ssl.SSLContext:
        """A server-side TLS context presenting ``issued``."""
        name = f"{issued.certificate.serial_number:x}"
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        if not cert.exists():
            cert.write_bytes(issued.certificate_pem())
            key.write_bytes(private_key_pem(issued.private_key, None))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def peer(self, pins: frozenset[str] | None = None) -> PeerTls:
        """How a member reaches the server gateway: its pin, and our federation anchor."""
        return PeerTls(
            pins or frozenset({spki_pin(self.server.certificate)}), (self.ca.certificate,)
        )

    def cafile(self) -> str:
        path = self.folder / "ca.pem"
        path.write_bytes(self.ca.certificate_pem())
        return str(path)


def _server_cert(ca: Issued, name: str, now: datetime) -> Issued:
    key = generate_key("p256")
    cert = issue_for_key(
        ca,
        name,
        key.public_key(),
        now=now,
        domains=[name],
        usage="signing",
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
    )
    return Issued(cert, key)


def make_tls_pki(folder: Path) -> TlsPki:
    """Fresh keys, valid now (the system clock: OpenSSL checks validity against it)."""
    now = datetime.now(UTC)
    ca = make_root_ca("SecureMail Relay Test Federation", now=now, key_type="p256")
    other = make_root_ca("Somebody Else's CA", now=now, key_type="p256")
    return TlsPki(
        ca, _server_cert(ca, "localhost", now), _server_cert(other, "localhost", now), folder
    )
