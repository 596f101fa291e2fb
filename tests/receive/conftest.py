"""Fixtures for the receive tests: a test TLS PKI, an in-memory Admit, a raw SMTP client."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from securemail.pki.authority import issue_for_key, make_root_ca, private_key_pem
from securemail.receive import Listener, ListenerSettings, Received
from securemail.receive.envelope import domain_of
from securemail.replies import Reply
from tests.conftest import NOW

SERVER_NAME = "mx.agency.govt.nz"
OUR_DOMAIN = "agency.govt.nz"
MEMBER_DOMAIN = "ministry.govt.nz"
WAIT = 30.0  # bound on anything that waits: generous for a loaded CI machine

T = TypeVar("T")

SMIME_MESSAGE = (
    b"From: gateway@ministry.govt.nz\r\n"
    b"To: bob@agency.govt.nz\r\n"
    b"Subject: SecureMail message\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data; name="smime.p7m"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"MIAGCSqGSIb3DQEHA6CAMIACAQAxggE=\r\n"
)

PLAIN_MESSAGE = (
    b"From: alice@agency.govt.nz\r\n"
    b"To: bob@ministry.govt.nz\r\n"
    b"Subject: Budget\r\n"
    b"\r\n"
    b"The figures.\r\n"
)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one test's coroutine in a fresh loop, bounded so a hang fails instead of waiting."""
    return asyncio.run(asyncio.wait_for(coroutine, WAIT))


@dataclass(frozen=True)
class Tls:
    """A server context for the listeners and a client context that trusts it."""

    server_files: tuple[Path, Path]
    client: ssl.SSLContext

    def server(self) -> ssl.SSLContext:
        """A fresh server context (the listener may raise its minimum version)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self.server_files)
        return context


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A test CA and a TLS server certificate for SERVER_NAME."""
    ca = make_root_ca("Receive Test CA", now=NOW, key_type="p256")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue_for_key(
        ca,
        SERVER_NAME,
        key.public_key(),
        now=NOW,
        domains=[SERVER_NAME],
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private_key_pem(key, None))
    client = ssl.create_default_context(cadata=ca.certificate_pem().decode("ascii"))
    return Tls((cert_path, key_path), client)


@dataclass
class Inbox:
    """An in-memory Admit: keeps every message and answers ``reply`` (or raises ``error``)."""

    reply: Reply = field(default_factory=lambda: Reply(250, "2.0.0", "Queued"))
    error: Exception | None = None
    messages: list[Received] = field(default_factory=list)

    async def __call__(self, received: Received) -> Reply:
        if self.error is not None:
            raise self.error
        self.messages.append(received)
        return self.reply


def settings(tls: ssl.SSLContext | None = None, **options: Any) -> ListenerSettings:
    """Settings for a listener on 127.0.0.1 at a port the OS picks."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "hostname": SERVER_NAME}
    return ListenerSettings(**(values | options), tls=tls)


def served(domain: str) -> bool:
    return domain == OUR_DOMAIN


def sender_allowed(address: str) -> bool:
    return domain_of(address) == OUR_DOMAIN


def check_recipient(mail_from: str, recipient: str) -> Reply | None:
    """Members' domains only (the test federation: our domain and one member)."""
    if domain_of(recipient) in (OUR_DOMAIN, MEMBER_DOMAIN):
        return None
    return Reply(550, "5.7.1", "Relay not permitted", "relay-denied", "not a member domain")


LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
ELSEWHERE = [ipaddress.ip_network("10.0.0.0/8")]


class RawClient:
    """An SMTP client that writes exactly the bytes it is given and reads whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def reply(self) -> str:
        """One reply, multi-line replies joined with newlines ("" if the server closed)."""
        lines: list[str] = []
        while True:
            line = (await self.reader.readline()).decode("ascii")
            if not line:
                return "\n".join(lines)
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return "\n".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str) -> str:
        await self.send(line.encode("ascii") + b"\r\n")
        return await self.reply()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        await self.writer.start_tls(context, server_hostname=SERVER_NAME)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):  # the server closed first
            await self.writer.wait_closed()


async def raw_session(port: int, helo: str = "EHLO client.agency.govt.nz") -> RawClient:
    """A raw client past the greeting and EHLO."""
    client = await RawClient.connect(port)
    assert (await client.reply()).startswith("220 ")
    assert (await client.command(helo)).startswith("250")
    return client


async def raw_tls_session(port: int, tls: Tls) -> RawClient:
    """A raw client past EHLO, STARTTLS and the second EHLO."""
    client = await raw_session(port)
    assert (await client.command("STARTTLS")).startswith("220 ")
    await client.start_tls(tls.client)
    assert (await client.command("EHLO client.agency.govt.nz")).startswith("250")
    return client


async def send_data(client: RawClient, message: bytes) -> str:
    """DATA, the message (already dot-stuffed, ending in CRLF), the final dot: the reply."""
    assert (await client.command("DATA")).startswith("354 ")
    await client.send(message + b".\r\n")
    return await client.reply()


async def smtp_client(port: int, tls: Tls | None = None) -> aiosmtplib.SMTP:
    """An aiosmtplib client connected (and, given ``tls``, after STARTTLS)."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
        local_hostname="client.agency.govt.nz",
        timeout=WAIT,
    )
    await client.connect()
    if tls is not None:
        await client.starttls(server_hostname=SERVER_NAME, tls_context=tls.client)
    return client


async def swaks(port: int, *args: str) -> tuple[int, str]:
    """Run swaks against 127.0.0.1:``port``: its exit status and transcript."""
    command = ["swaks", "--server", f"127.0.0.1:{port}", "--timeout", "30", *args]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), WAIT)
    return process.returncode or 0, out.decode(errors="replace")


async def with_listener(start: Awaitable[Listener], body: Callable[[Listener], Awaitable[T]]) -> T:
    """Run ``body`` against a started listener and always close it."""
    listener = await start
    try:
        return await body(listener)
    finally:
        await listener.close()
