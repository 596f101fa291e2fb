"""Worker processes beside the listeners (``[node] workers = N``): start, watch, restart, drain.

Theory of operation. With ``workers`` above one, the main process runs the listeners, the
web, IMAP, the directory refresher and the notice loops; ``workers`` child processes run
the outbound and inbound workers. They share nothing but the database and the mail
stores: a child is ``securemail serve --role worker --config FILE``, a fresh interpreter
that opens the same configuration, keys and queue (not a fork: no event loop, socket or
database connection is inherited, and the same command runs a worker on another host).
A child that dies is restarted after a pause, and the entries it held return to the
queue at once (``recover`` of its ``node/pid`` claims; its leases would free them later
anyway). SIGTERM (``stop``) is passed on: each child finishes the entries in hand, then
exits. A child whose stdin reaches end of file (the main process died, even by kill -9)
drains and exits the same way.

Security: the children get the configuration path and the environment (which may hold
the key passphrase, as the main process's does), never a secret on their command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("securemail.node")

RESTART_SECONDS = 1.0  # a child that keeps dying is restarted at most this often
DRAIN_SECONDS = 60.0  # after SIGTERM, how long a child may finish its entries


class WorkerProcesses:
    """Keeps ``count`` worker processes of one node running until ``stop``."""

    def __init__(
        self,
        config_path: Path,
        count: int,
        recover: Callable[[int], Awaitable[int]],
        *,
        log_level: str = "INFO",
    ) -> None:
        self._path, self._count, self._recover, self._level = config_path, count, recover, log_level
        self.pids: dict[int, int] = {}  # slot -> pid of the running child

    async def run(self, stop: asyncio.Event) -> None:
        """Start every child, restart those that die, and drain them all at ``stop``."""
        await asyncio.gather(*(self._keep(slot, stop) for slot in range(self._count)))

    async def _keep(self, slot: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            child = await asyncio.create_subprocess_exec(
                *self._command(), stdin=asyncio.subprocess.PIPE
            )
            self.pids[slot] = child.pid
            exited = asyncio.create_task(child.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not exited.done():
                await _drain(child, exited)
                return
            self.pids.pop(slot, None)
            recovered = await self._recover(child.pid)
            log.warning(
                "worker process %d exited with %s; %d entries back in the queue; restarting",
                child.pid,
                child.returncode,
                recovered,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_SECONDS)

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "securemail",
            "serve",
            "--role",
            "worker",
            "--config",
            str(self._path),
            "--log-level",
            self._level,
        ]


async def _drain(child: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
    """SIGTERM, then wait for the child to finish its entries (kill it after DRAIN_SECONDS)."""
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(exited), DRAIN_SECONDS)
    except TimeoutError:
        log.error("worker process %d did not finish in %ss: killed", child.pid, DRAIN_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await exited


async def watch_parent(stop: asyncio.Event) -> None:
    """In a child: set ``stop`` when stdin ends (the main process exited or was killed)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()
