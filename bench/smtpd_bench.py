"""CPU a message costs the SMTP receive side alone: one relay listener, a no-op Admit.

Usage (from the repository root, the project's venv first on PATH):

    PYTHONPATH=src:. python bench/smtpd_bench.py                 # 2000 x 4 KiB, 8 clients
    PYTHONPATH=src:. python bench/smtpd_bench.py --count 600 --size 65536 --clients 4
    PYTHONPATH=src:. python bench/smtpd_bench.py --per-session 10   # DATA's share alone
    PYTHONPATH=src:. python bench/smtpd_bench.py --per-session 10 --pipeline --tls

The listener runs in a thread of this process, in its own event loop (uvloop where it is
installed, as ``securemail serve`` runs it), with the relay listener's gate (loopback
allowed, every sender and recipient taken) and an Admit that answers 250 at once, so what
is measured is aiosmtpd and :mod:`securemail.receive`: the greeting, EHLO, MAIL, RCPT,
DATA with a 4 KiB message (the gateway benchmark's), QUIT, a new connection per message
as the gateway benchmark's clients do (``--per-session N``: N messages a connection, as
gateway A's pinned relay sessions bring them to B; ``--pipeline``: MAIL, RCPT and DATA in
one write, RFC 2920, whether or not the listener offers it; ``--tls``: STARTTLS first, as
B's peer sessions). The clients run in a child
process (blocking sockets, one thread each), so they take no CPU from the server's thread.
Printed: the server thread's CPU time per message (``time.thread_time`` read inside the
loop after a warm-up and after the batch), and the rate, which on a shared machine means
little.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import multiprocessing
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from securemail.pki.authority import make_root_ca, private_key_pem
from securemail.receive import ListenerSettings, Received
from securemail.receive.relay import start_relay_listener
from securemail.receive.server import Listener
from securemail.replies import Reply
from smime_bench import make_message

HOSTNAME = "mx.agency.govt.nz"
QUEUED = Reply(250, "2.0.0", "Queued")
T = TypeVar("T")


async def _admit(received: Received) -> Reply:
    return QUEUED


def _new_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop  # noqa: PLC0415 (optional, as in securemail serve)
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


@dataclass(frozen=True)
class Shape:
    """How the clients talk: messages a connection, MAIL/RCPT/DATA in one write or one
    at a time, after STARTTLS or in clear."""

    per_session: int = 1
    pipeline: bool = False
    tls: bool = False


def _server_tls(folder: Path) -> ssl.SSLContext:
    """A throw-away self-signed P-256 certificate (the clients do not verify it)."""
    issued = make_root_ca(HOSTNAME, now=datetime.now(UTC), key_type="p256")
    certificate, key = folder / "tls.pem", folder / "tls.key"
    certificate.write_bytes(issued.certificate_pem())
    key.write_bytes(private_key_pem(issued.private_key, None))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return context


class Server:
    """The listener in its own thread and loop; ``cpu()`` is that thread's CPU time."""

    def __init__(self, tls: bool) -> None:
        self.loop = _new_loop()()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        with tempfile.TemporaryDirectory() as folder:
            context = _server_tls(Path(folder)) if tls else None
        self.listener: Listener = self.call(self._start(context))

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(60)

    async def _start(self, tls: ssl.SSLContext | None) -> Listener:
        settings = ListenerSettings(
            host="127.0.0.1", port=0, hostname=HOSTNAME, max_connections=1000, tls=tls
        )
        return await start_relay_listener(
            settings,
            networks=[ipaddress.ip_network("127.0.0.0/8")],
            check_recipient=lambda mail_from, recipient: None,
            sender_allowed=lambda address: True,
            admit=_admit,
        )

    async def _cpu(self) -> float:
        return time.thread_time()

    def cpu(self) -> float:
        return self.call(self._cpu())

    def stop(self) -> None:
        self.call(self.listener.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _expect(sock: socket.socket, *codes: bytes) -> None:
    """Read one (possibly multi-line) reply for each of ``codes``; fail unless each
    starts with its code."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed, wanted {codes!r}, got {data!r}")
        data += chunk
        lines = data.split(b"\r\n")[:-1]
        finals = [line for line in lines if line[3:4] == b" "]
        if data.endswith(b"\r\n") and len(finals) >= len(codes):
            break
    if [line[:3] for line in finals] != list(codes):
        raise RuntimeError(f"wanted {codes!r}, got {data!r}")


_TRANSACTION = (
    (b"MAIL FROM:<alice@agency.govt.nz>", b"250"),
    (b"RCPT TO:<bob@ministry.govt.nz>", b"250"),
    (b"DATA", b"354"),
)


def _session(port: int, body: bytes, shape: Shape) -> None:
    with socket.create_connection(("127.0.0.1", port)) as plain:
        sock = plain
        _expect(sock, b"220")
        sock.sendall(b"EHLO client.agency.govt.nz\r\n")
        _expect(sock, b"250")
        if shape.tls:
            sock.sendall(b"STARTTLS\r\n")
            _expect(sock, b"220")
            sock = _CLIENT_TLS.wrap_socket(plain, server_hostname=HOSTNAME)
            sock.sendall(b"EHLO client.agency.govt.nz\r\n")
            _expect(sock, b"250")
        for _ in range(shape.per_session):
            if shape.pipeline:  # RFC 2920: MAIL, RCPT and DATA in one write
                sock.sendall(b"".join(line + b"\r\n" for line, _ in _TRANSACTION))
                _expect(sock, *(code for _, code in _TRANSACTION))
            else:
                for line, code in _TRANSACTION:
                    sock.sendall(line + b"\r\n")
                    _expect(sock, code)
            sock.sendall(body + b".\r\n")
            _expect(sock, b"250")
        sock.sendall(b"QUIT\r\n")
        _expect(sock, b"221")


def _client_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the benchmark's own throw-away certificate
    return context


_CLIENT_TLS = _client_tls()


def _clients(port: int, body: bytes, count: int, clients: int, shape: Shape) -> None:
    """``count`` messages from ``clients`` threads, ``shape.per_session`` a connection (run
    in a child process); ``count`` is rounded down to whole sessions."""
    sessions = count // shape.per_session
    shares = [sessions // clients + (1 if i < sessions % clients else 0) for i in range(clients)]

    def work(share: int) -> None:
        for _ in range(share):
            _session(port, body, shape)

    threads = [threading.Thread(target=work, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _batch(port: int, body: bytes, count: int, clients: int, shape: Shape) -> None:
    child = multiprocessing.get_context("spawn").Process(
        target=_clients, args=(port, body, count, clients, shape)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"smtpd_bench: FAILED: the clients exited with {child.exitcode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="messages (default 2000)")
    parser.add_argument("--size", type=int, default=4096, help="body bytes (default 4096)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument(
        "--per-session", type=int, default=1, help="messages a connection (default 1)"
    )
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="send MAIL, RCPT and DATA in one write (RFC 2920), as a pipelining relay does",
    )
    parser.add_argument(
        "--tls", action="store_true", help="STARTTLS before the messages (B's peer sessions)"
    )
    options = parser.parse_args()
    body = make_message(options.size)
    server = Server(options.tls)
    port = server.listener.port
    shape = Shape(options.per_session, options.pipeline, options.tls)
    count = options.count // shape.per_session * shape.per_session
    _batch(port, body, 50, options.clients, shape)  # warm-up
    cpu, start = server.cpu(), time.perf_counter()
    _batch(port, body, count, options.clients, shape)
    cpu, wall = server.cpu() - cpu, time.perf_counter() - start
    server.stop()
    how = "".join(
        (", pipelined" if shape.pipeline else "", ", after STARTTLS" if shape.tls else "")
    )
    print(
        f"smtpd_bench: {count} x {options.size} B, {options.clients} clients, "
        f"{shape.per_session} a connection{how}: "
        f"server thread CPU {cpu * 1000 / count:.3f} ms/msg, {count / wall:.0f} msg/s"
    )


if __name__ == "__main__":
    main()
