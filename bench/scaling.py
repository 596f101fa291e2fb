"""The gateway benchmark's scaling rows: one node's outbound path by worker processes, and
two sending nodes on one PostgreSQL database.

The outbound path alone: gateway A (SQLite) with its relay listener, protect and the pinned
relay, to a peer that only accepts: an SMTP sink on the provider's peer port, offering
STARTTLS with the provider's own TLS certificate (so A's pin and chain checks pass) and
answering 250 to everything. The sink is a minimal asyncio SMTP server (STARTTLS required,
DATA read whole to its final dot) in a process of its own (its TLS and SMTP work do not
share the clients' interpreter lock); the benchmark asks it over a pipe how many of
the messages it waits for have come, and at the end when each came and how often. It runs
once with ``[node] workers = 1`` and once with ``workers = "auto"`` (a worker process per
core beside the listeners).

Two nodes on one PostgreSQL: gateway A and a second node of the same organisations and
keys (``agency-2``: its own name, ports, data and mail directories) share one schema; the
clients submit to both relay listeners in turn; gateway B delivers as in the main rows.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import shutil
import signal
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from securemail.config.node import load_config
from securemail.demo.federation import NodeSetup, free_port
from securemail.node.context import read_passphrase

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
_LISTEN = re.compile(r'^(listen|tls_listen) = "127\.0\.0\.1:(\d+)"$', re.MULTILINE)


class SinkError(Exception):
    """The sink process did not start, or stopped answering."""


class Accepting:
    """When each Message-ID first came to the sink, and how many times."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.copies: dict[str, int] = {}

    def note(self, content: bytes) -> None:
        found = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
        key = found.group(1).decode() if found else f"no-id-{len(self.seen)}"
        self.seen.setdefault(key, time.monotonic())
        self.copies[key] = self.copies.get(key, 0) + 1


# The extensions aiosmtpd offers (the sink it replaces), STARTTLS only before it.
_EHLO = b"250-127.0.0.1\r\n250-SIZE 67108864\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 HELP\r\n"
_EHLO_PLAIN = _EHLO.replace(b"250 HELP", b"250-STARTTLS\r\n250 HELP")  # before STARTTLS


async def _session(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    accepting: Accepting,
    context: ssl.SSLContext,
) -> None:
    """One SMTP session of the sink: STARTTLS first (530 to a transaction before it), then
    250 to every message; DATA is read whole up to its final dot."""
    secure = False
    writer.write(b"220 127.0.0.1 ESMTP sink\r\n")
    try:
        while line := await reader.readline():
            verb = line[:8].split(maxsplit=1)[0].upper() if line.strip() else b""
            if verb in (b"EHLO", b"HELO"):
                writer.write(_EHLO if secure else _EHLO_PLAIN)
            elif verb == b"STARTTLS" and not secure:
                writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                await writer.drain()
                await writer.start_tls(context)
                secure = True
            elif verb in (b"MAIL", b"RCPT", b"DATA") and not secure:
                writer.write(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 OK\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                accepting.note(await reader.readuntil(b"\r\n.\r\n"))
                writer.write(b"250 2.0.0 Accepted\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"502 5.5.2 Command not recognized\r\n")
            await writer.drain()
        await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # the client went away; what it sent in full is noted
    finally:
        writer.close()


class Sink:
    """The benchmark's side of the sink process: what it has accepted, over a pipe."""

    def __init__(self, conn: Connection, process: BaseProcess) -> None:
        self._conn = conn
        self.process = process

    def _call(self, *request: object) -> Any:  # each request has its own answer
        try:
            self._conn.send(request)
            if not self._conn.poll(30):
                raise SinkError("the sink process did not answer for 30 s")
            return self._conn.recv()
        except (OSError, EOFError) as error:  # it exited: the pipe is closed
            raise SinkError(f"the sink process is gone ({error!r})") from error

    def expect(self, ids: Sequence[str]) -> None:
        """The Message-IDs :meth:`arrived` counts from now on."""
        self._call("expect", list(ids))

    def arrived(self) -> int:
        """How many of the expected Message-IDs the sink has accepted so far."""
        count: int = self._call("arrived")
        return count

    def results(self) -> tuple[dict[str, float], dict[str, int]]:
        """When each Message-ID first came (monotonic clock, the same system-wide), and
        how many times."""
        seen, copies = self._call("results")
        return seen, copies


def _serve(conn: Connection, port: int, chain: tuple[str, str, bytes | None]) -> None:
    """In the sink process: accept on ``port`` and answer the benchmark's requests until
    it closes the pipe (or exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the benchmark stops it in order
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain[0], chain[1], password=chain[2])
    asyncio.run(_accept(conn, port, context))


async def _accept(conn: Connection, port: int, context: ssl.SSLContext) -> None:
    accepting = Accepting()
    server = await asyncio.start_server(
        lambda reader, writer: _session(reader, writer, accepting, context),
        "127.0.0.1",
        port,
        limit=64 * 1024 * 1024,
    )
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    expected: set[str] = set()

    def answer() -> None:  # the pipe is readable: one request, answered at once
        nonlocal expected
        try:
            request = conn.recv()
        except EOFError:
            loop.remove_reader(conn.fileno())
            closed.set_result(None)
            return
        if request[0] == "expect":
            expected = set(request[1])
            conn.send(None)
        elif request[0] == "arrived":
            conn.send(len(expected.intersection(accepting.seen)))
        else:
            conn.send((accepting.seen, accepting.copies))

    loop.add_reader(conn.fileno(), answer)
    conn.send("ready")
    try:
        await closed
    finally:
        server.close()


@contextmanager
def sink(provider: NodeSetup) -> Iterator[Sink]:
    """An accepting peer on the provider's peer port, with the provider's TLS identity, in
    a process of its own (stopped at exit)."""
    config = load_config(provider.config)
    chain = (str(config.tls_certificate), str(config.tls_key), read_passphrase(config))
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, provider.peer_port, chain), daemon=True
    )
    process.start()
    theirs.close()
    try:
        try:
            ready = ours.poll(60) and ours.recv() == "ready"
        except EOFError:  # it exited (its traceback is on stderr)
            ready = False
        if not ready:
            raise SinkError(f"the sink process did not start (exit status {process.exitcode})")
        yield Sink(ours, process)
    finally:
        ours.close()  # the sink stops at the end of the pipe
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def with_workers(text: str, workers: str) -> str:
    """A node.toml text with ``[node] workers`` set (a number, or "auto")."""
    value = workers if workers.isdigit() else f'"{workers}"'
    return text.replace("[node]\n", f"[node]\nworkers = {value}\n", 1)


def second_node(agency: NodeSetup) -> NodeSetup:
    """A second node of the agency's organisations, beside it: its own name, listening
    ports, data and mail directories; the same keys, federation and directory."""
    text = agency.config.read_text()
    text = text.replace('name = "agency.demo', 'name = "agency-2.demo', 1)
    text = text.replace('data_dir = "data"', 'data_dir = "data-2"', 1)
    text = text.replace('path = "mail"', 'path = "mail-2"')
    text = _LISTEN.sub(lambda m: f'{m.group(1)} = "127.0.0.1:{free_port()}"', text)
    config = agency.config.with_name("node-2.toml")
    config.write_text(text)
    mail = agency.config.parent / "mail-2"
    mail.mkdir(mode=0o700, exist_ok=True)
    return NodeSetup("agency-2", config, _port(text, "peer"), _port(text, "relay"), mail)


def _port(text: str, table: str) -> int:
    found = re.search(rf'\[{table}\]\nlisten = "127\.0\.0\.1:(\d+)"', text)
    if found is None:
        raise ValueError(f"no [{table}] listen in the node's configuration")
    return int(found.group(1))


def reset_second(setup: NodeSetup, original: str, database: str) -> None:
    """Empty the second node's data and mail; point it at the shared ``database`` (its
    accounts are the first node's, in the same database)."""
    shutil.rmtree(setup.config.parent / "data-2", ignore_errors=True)
    for item in setup.mail.iterdir():
        shutil.rmtree(item)
    setup.config.write_text(original.replace("[node]\n", f'[node]\ndatabase = "{database}"\n', 1))
