"""THREATS.md A (durability): kill -9 of either node mid-stream loses no acknowledged message
and delivers none twice. The nodes run as real ``securemail serve`` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib

from securemail.demo.exchange import Script, head
from securemail.queue import QueueStore
from tests.node.conftest import Federation, running

DEADLINE = 120.0
SCRIPT = Script(
    "crash test",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "Durability",
)


class Process:
    """One node as a child process, killed with SIGKILL on demand."""

    def __init__(self, config: Path, log: Path | None = None) -> None:
        self.config = config
        self.log = log  # where the node's stderr goes (a pipe nobody reads can fill up)
        self.child: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ports = self.config.parent / "data" / "ports.json"
        ports.unlink(missing_ok=True)
        self.child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "securemail",
                "serve",
                "--config",
                str(self.config),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if self.log is None else self.log.open("ab"),
        )
        deadline = time.monotonic() + 60
        while not ports.exists():
            if self.child.poll() is not None:
                if self.log is not None:
                    raise AssertionError(self.log.read_text(errors="replace"))
                raise AssertionError(self.child.stderr.read().decode() if self.child.stderr else "")
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.child is not None
        os.kill(self.child.pid, signal.SIGKILL)
        self.child.wait(30)

    def stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


async def _send(port: int, n: int) -> bool:
    """Submit message ``n``; True if the node acknowledged it with 250."""
    try:
        await aiosmtplib.send(
            SCRIPT.message(n, datetime.now(UTC)),
            sender=SCRIPT.mail_from,
            recipients=list(SCRIPT.to),
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
            timeout=10,
        )
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


def _delivered(mailbox: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for folder in ("new", "cur"):
        path = mailbox / folder
        for item in path.iterdir() if path.is_dir() else ():
            for line in head(item.read_bytes()).splitlines():
                if line.lower().startswith(b"message-id:"):
                    counts[line.split(b":", 1)[1].strip().decode()] += 1
    return counts


def test_kill_9_loses_nothing_acknowledged_and_delivers_once(federation: Federation) -> None:
    """Acknowledged mail survives SIGKILL of the sending and receiving node, delivered once."""
    agency = Process(federation.nodes["agency"].config)
    provider = Process(federation.nodes["provider"].config)
    relay_port = federation.nodes["agency"].relay_port
    acknowledged: set[str] = set()
    try:
        agency.start()
        provider.start()
        n = 0
        for victim in (agency, provider, agency, provider):
            for _ in range(10):
                n += 1
                if asyncio.run(_send(relay_port, n)):
                    acknowledged.add(Script.message_id(n, "agency.govt.nz"))
            victim.kill()  # mid-stream: entries are queued, active, relaying or delivering
            victim.start()
        mailbox = federation.nodes["provider"].mailbox(SCRIPT.to[0])
        deadline = time.monotonic() + DEADLINE
        while not acknowledged <= set(_delivered(mailbox)) and time.monotonic() < deadline:
            time.sleep(0.5)
        delivered = _delivered(mailbox)
    finally:
        agency.stop()
        provider.stop()
    assert len(acknowledged) >= 30, "most submissions should have been acknowledged"
    missing = acknowledged - set(delivered)
    assert not missing, f"acknowledged but never delivered: {sorted(missing)}"
    twice = {message_id: count for message_id, count in delivered.items() if count > 1}
    assert not twice, f"delivered more than once: {twice}"


def test_client_gone_mid_data_leaves_nothing_queued(federation: Federation) -> None:
    """A client that drops the connection in the middle of DATA gets nothing queued."""

    async def scenario() -> int:
        async with running(federation, "agency"):
            port = federation.nodes["agency"].relay_port
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for line in (
                b"EHLO client.agency.govt.nz",
                b"MAIL FROM:<aroha.ngata@agency.govt.nz>",
                b"RCPT TO:<hemi.walker@securemail.provider.nz>",
                b"DATA",
            ):
                writer.write(line + b"\r\n")
            writer.write(b"From: aroha.ngata@agency.govt.nz\r\nSubject: half\r\n\r\nhalf a bo")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            await asyncio.sleep(0.5)
            with QueueStore.open(federation.config("agency").database) as store:
                return len(store.list())

    assert asyncio.run(scenario()) == 0
