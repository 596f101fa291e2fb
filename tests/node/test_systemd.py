"""sd_notify: readiness, watchdog and stopping datagrams on a real AF_UNIX socket, from the
function and from ``securemail serve`` run as systemd would run it."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from securemail.node import systemd
from tests.node.conftest import Federation


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound where NOTIFY_SOCKET will point, as systemd binds its own."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30)
        yield path, sock


def test_notify_sends_one_datagram_to_a_path_or_an_abstract_socket(
    notify_socket: tuple[str, socket.socket],
) -> None:
    """READY=1 reaches a socket named by path and one in the abstract namespace (``@``);
    without NOTIFY_SOCKET nothing is sent and the answer is False."""
    path, sock = notify_socket
    assert systemd.notify("READY=1", {"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1"
    name = f"securemail-test-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        abstract.settimeout(5)
        assert systemd.notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(4096) == b"STOPPING=1"
    assert not systemd.notify("READY=1", {})
    assert not systemd.notify("READY=1", {"NOTIFY_SOCKET": str(Path(path).parent / "none")})


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process() -> None:
    """WATCHDOG_USEC=4s gives a ping every 2 s; another process's WATCHDOG_PID gives none."""
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 2.0
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(mine) == 2.0
    assert systemd.watchdog_interval(mine | {"WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_keep_watchdog_pings_until_stopped(
    notify_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep_watchdog sends WATCHDOG=1 at its interval and ends when stop is set."""
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(systemd.keep_watchdog(0.05, stop))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    sock.settimeout(0.5)
    pings = []
    while True:
        try:
            pings.append(sock.recv(4096))
        except TimeoutError:
            break
    assert len(pings) >= 3 and set(pings) == {b"WATCHDOG=1"}


def test_serve_under_systemd_notifies_and_logs_for_the_journal(
    federation: Federation, notify_socket: tuple[str, socket.socket], tmp_path: Path
) -> None:
    """``securemail serve`` with NOTIFY_SOCKET, WATCHDOG_USEC and JOURNAL_STREAM set sends
    READY=1 once listening, WATCHDOG=1 while running and STOPPING=1 on SIGTERM, and writes
    its log lines with a priority prefix and no timestamp."""
    path, sock = notify_socket
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        status = os.fstat(err.fileno())
        environ = os.environ | {
            "NOTIFY_SOCKET": path,
            "WATCHDOG_USEC": "400000",
            "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}",
        }
        config = str(federation.nodes["agency"].config)
        command = [sys.executable, "-m", "securemail", "serve", "--config", config]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=environ)
        seen: list[str] = []
        try:
            while "STOPPING=1" not in seen:
                seen.append(sock.recv(4096).decode())
                if seen[-1] == "WATCHDOG=1" and any(m.startswith("READY=1") for m in seen):
                    child.send_signal(signal.SIGTERM)  # a ping came after READY: enough
            assert child.wait(30) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(30)
    ready = next(i for i, message in enumerate(seen) if message.startswith("READY=1"))
    assert seen[ready].startswith("READY=1\nSTATUS=serving; peer port "), seen
    assert "WATCHDOG=1" in seen[ready:] and seen[-1] == "STOPPING=1"
    lines = [line for line in stderr.read_text().splitlines() if line.startswith("<")]
    assert any(line.startswith("<6>info securemail.node msg=") for line in lines), lines
    assert not any(line[3:7].isdigit() for line in lines)
