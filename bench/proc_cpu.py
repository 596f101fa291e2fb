"""CPU time of benchmarked processes, read from /proc (Linux): one reader for every benchmark.

A server under test is one process group (a ``securemail serve`` node started in its own
session, Postfix's master and its daemons): its CPU time is the user + system time of every
live member, plus the time of members that already exited and were reaped by the group's
leader (``cutime`` + ``cstime`` of the leader). A member that exits and is reaped by a
process outside the group between two readings is not counted; none of the servers here
does that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces; everything after its ")" is split safely.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (every thread) so far: a benchmark's own cost."""
    return cpu_seconds(os.getpid())


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of process group ``pgid`` so far (see the module docstring)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        if int(fields[2]) != pgid:  # field 5, pgrp
            continue
        total += int(fields[11]) + int(fields[12])
        if int(entry.name) == pgid:
            total += int(fields[13]) + int(fields[14])  # reaped children
    return total / TICKS


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the main thread of ``pid`` (its thread id is ``pid``).

    For a node, the main thread runs the asyncio event loop (SMTP, TLS, S/MIME, service
    code); the other threads are its database thread and ``to_thread`` workers.
    """
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def settle(pgids: Sequence[int], timeout: float, interval: float = 0.25) -> bool:
    """Wait until the groups are idle: two intervals in a row below 4 % of a core each.

    Work a message causes can go on after the benchmark saw it delivered (the receipt going
    back, the queue's clean-up); waiting for idle counts it. False if still busy at
    ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last = [group_cpu_seconds(g) for g in pgids]
    quiet = 0
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = [group_cpu_seconds(g) for g in pgids]
        busy = any(b - a > 0.04 * interval for a, b in zip(last, now, strict=True))
        quiet = 0 if busy else quiet + 1
        if quiet >= 2:
            return True
        last = now
    return False
