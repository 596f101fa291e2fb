"""``[node] workers = 2``: worker processes beside the listeners exchange mail, and kill -9
of a worker process loses nothing acknowledged and delivers nothing twice; the node
restarts it. The nodes run as real ``securemail serve`` processes on SQLite (WAL)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Set
from pathlib import Path

from securemail.demo.exchange import Script
from tests.node.conftest import Federation
from tests.node.test_crash import DEADLINE, SCRIPT, Process, _delivered, _send
from tests.node.test_postgres import on_postgres  # noqa: F401 (a fixture)

WORKERS = 2


def with_workers(config: Path, count: int) -> None:
    """Set ``[node] workers`` in the node's configuration file."""
    text = config.read_text()
    assert "\n[node]\n" in text or text.startswith("[node]\n"), text
    config.write_text(text.replace("[node]\n", f"[node]\nworkers = {count}\n", 1))


def workers_of(pid: int) -> set[int]:
    """The pids of the worker processes a node's main process ``pid`` started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"--role\0worker" in cmdline:
            found.add(int(entry.name))
    return found


def wait_for_workers(node: Process, count: int, *, besides: Set[int] = frozenset()) -> set[int]:
    """Wait until ``node`` runs ``count`` worker processes none of which is in ``besides``."""
    assert node.child is not None
    deadline = time.monotonic() + 60
    while True:
        pids = workers_of(node.child.pid)
        if len(pids) == count and not pids & besides:
            return pids
        assert time.monotonic() < deadline, f"workers {pids}, wanted {count} new ones"
        time.sleep(0.1)


def test_worker_processes_survive_kill_9_and_deliver_once(federation: Federation) -> None:
    """Both nodes with two worker processes on SQLite: kill -9 of a worker on each side
    mid-stream; every acknowledged message is delivered once and the worker restarted."""
    exchange_killing_workers(federation)


def test_worker_processes_on_postgresql(on_postgres: Federation) -> None:  # noqa: F811
    """The same on PostgreSQL, where worker processes are woken by LISTEN/NOTIFY."""
    exchange_killing_workers(on_postgres)


def exchange_killing_workers(federation: Federation) -> None:
    """30 messages agency -> provider, a worker process killed after every 10."""
    for name in ("agency", "provider"):
        with_workers(federation.nodes[name].config, WORKERS)
    agency = Process(federation.nodes["agency"].config)
    provider = Process(federation.nodes["provider"].config)
    relay_port = federation.nodes["agency"].relay_port
    acknowledged: set[str] = set()
    try:
        agency.start()
        provider.start()
        n = 0
        for victim in (agency, provider, agency):
            before = wait_for_workers(victim, WORKERS)
            for _ in range(10):
                n += 1
                if asyncio.run(_send(relay_port, n)):
                    acknowledged.add(Script.message_id(n, "agency.govt.nz"))
            killed = min(before)
            os.kill(killed, signal.SIGKILL)  # mid-stream: claimed, relaying or delivering
            wait_for_workers(victim, WORKERS, besides={killed})
        mailbox = federation.nodes["provider"].mailbox(SCRIPT.to[0])
        deadline = time.monotonic() + DEADLINE
        while not acknowledged <= set(_delivered(mailbox)) and time.monotonic() < deadline:
            time.sleep(0.5)
        delivered = _delivered(mailbox)
    finally:
        agency.stop()
        provider.stop()
    assert len(acknowledged) == 30, "the listeners run on while a worker dies"
    missing = acknowledged - set(delivered)
    assert not missing, f"acknowledged but never delivered: {sorted(missing)}"
    twice = {message_id: count for message_id, count in delivered.items() if count > 1}
    assert not twice, f"delivered more than once: {twice}"
