"""CPU a message costs the SMTP receive side alone: one relay listener, a no-op Admit.

Usage (from the repository root, the project's venv first on PATH):

    PYTHONPATH=src:. python bench/smtpd_bench.py                 # 2000 x 4 KiB, 8 clients
    PYTHONPATH=src:. python bench/smtpd_bench.py --count 600 --size 65536 --clients 4
    PYTHONPATH=src:. python bench/smtpd_bench.py --per-session 10   # DATA's share alone

The listener runs in a thread of this process, in its own event loop (uvloop where it is
installed, as ``securemail serve`` runs it), with the relay listener's gate (loopback
allowed, every sender and recipient taken) and an Admit that answers 250 at once, so what
is measured is aiosmtpd and :mod:`securemail.receive`: the greeting, EHLO, MAIL, RCPT,
DATA with a 4 KiB message (the gateway benchmark's), QUIT, a new connection per message
as the gateway benchmark's clients do (``--per-session N``: N messages a connection, as
gateway A's pinned relay sessions bring them to B). The clients run in a child process (blocking
sockets, one thread each), so they take no CPU from the server's thread. Printed: the
server thread's CPU time per message (``time.thread_time`` read inside the loop after a
warm-up and after the batch), and the rate, which on a shared machine means little.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

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


class Server:
    """The listener in its own thread and loop; ``cpu()`` is that thread's CPU time."""

    def __init__(self) -> None:
        self.loop = _new_loop()()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.listener: Listener = self.call(self._start())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(60)

    async def _start(self) -> Listener:
        settings = ListenerSettings(
            host="127.0.0.1", port=0, hostname=HOSTNAME, max_connections=1000
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


def _expect(sock: socket.socket, code: bytes) -> None:
    """Read one (possibly multi-line) reply; fail unless it starts with ``code``."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed, wanted {code!r}, got {data!r}")
        data += chunk
        last = data.rstrip(b"\r\n").rpartition(b"\r\n")[2]
        if data.endswith(b"\r\n") and last[3:4] == b" ":
            break
    if not data.startswith(code):
        raise RuntimeError(f"wanted {code!r}, got {data!r}")


def _session(port: int, body: bytes, messages: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        _expect(sock, b"220")
        sock.sendall(b"EHLO client.agency.govt.nz\r\n")
        _expect(sock, b"250")
        for _ in range(messages):
            for line, code in (
                (b"MAIL FROM:<alice@agency.govt.nz>", b"250"),
                (b"RCPT TO:<bob@ministry.govt.nz>", b"250"),
                (b"DATA", b"354"),
            ):
                sock.sendall(line + b"\r\n")
                _expect(sock, code)
            sock.sendall(body + b".\r\n")
            _expect(sock, b"250")
        sock.sendall(b"QUIT\r\n")
        _expect(sock, b"221")


def _clients(port: int, body: bytes, count: int, clients: int, per_session: int) -> None:
    """``count`` messages from ``clients`` threads, ``per_session`` a connection (run in a
    child process); ``count`` is rounded down to whole sessions."""
    sessions = count // per_session
    shares = [sessions // clients + (1 if i < sessions % clients else 0) for i in range(clients)]

    def work(share: int) -> None:
        for _ in range(share):
            _session(port, body, per_session)

    threads = [threading.Thread(target=work, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _batch(port: int, body: bytes, count: int, clients: int, per_session: int) -> None:
    child = multiprocessing.get_context("spawn").Process(
        target=_clients, args=(port, body, count, clients, per_session)
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
    options = parser.parse_args()
    body = make_message(options.size)
    server = Server()
    port = server.listener.port
    per_session = options.per_session
    count = options.count // per_session * per_session
    _batch(port, body, 50, options.clients, per_session)  # warm-up
    cpu, start = server.cpu(), time.perf_counter()
    _batch(port, body, count, options.clients, per_session)
    cpu, wall = server.cpu() - cpu, time.perf_counter() - start
    server.stop()
    print(
        f"smtpd_bench: {count} x {options.size} B, {options.clients} clients, "
        f"{per_session} a connection: server thread CPU {cpu * 1000 / count:.3f} ms/msg, "
        f"{count / wall:.0f} msg/s"
    )


if __name__ == "__main__":
    main()
