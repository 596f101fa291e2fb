"""Throughput of one plain Postfix relay hop with its real queue: the gateway's reference.

Run from the repository root, as root (Postfix's master needs it)::

    python bench/postfix_reference.py                     # 2000 messages at 4 KiB and 64 KiB
    python bench/postfix_reference.py --count 200         # smoke run
    python bench/postfix_reference.py --markdown          # a Markdown table, for the docs

For each size, ``smtp-source`` (8 parallel sessions, a new connection per message) submits
N messages to a private Postfix instance (tests/support/postfix.py: its own queue on disk,
default tuning) that relays everything to ``smtp-sink`` on loopback. The time runs from
the first submission until smtp-sink has counted all N messages (its ``-c`` counters), so
it covers smtpd, cleanup, the queue files' fsync, qmgr and the smtp client: the same hop
a gateway makes, minus the S/MIME work. Postfix's CPU time per message (all its processes,
from /proc) is measured over the same batch. The whole run is bounded (300 s by default).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proc_cpu import group_cpu_seconds, settle

# The harness lives in the test tree; run as a script, only bench/ is on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.postfix import free_port, start_postfix

SESSIONS = 8
BUDGET = 300.0  # seconds for the whole run
_MESSAGES = re.compile(rb"mesg=(\d+)")


class _SinkCounter:
    """Follows smtp-sink's ``-c`` output ("sess=.. quit=.. mesg=N\\r") in a thread."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self._lock = threading.Condition()
        self.messages = 0
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        pending = b""
        while chunk := os.read(self._stdout.fileno(), 65536):
            *counters, pending = (pending + chunk).split(b"\r")
            found = [int(m.group(1)) for c in counters if (m := _MESSAGES.search(c))]
            if found:
                with self._lock:
                    self.messages = found[-1]
                    self._lock.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Whether smtp-sink received ``count`` messages within ``timeout`` seconds."""
        with self._lock:
            return self._lock.wait_for(lambda: self.messages >= count, timeout)


@contextmanager
def _smtp_sink(port: int) -> Iterator[_SinkCounter]:
    """smtp-sink on 127.0.0.1:``port`` (backlog 1000), stopped at exit."""
    # smtp-sink refuses to run as root unless told which user to become.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    command = ["smtp-sink", *user, "-c", f"127.0.0.1:{port}", "1000"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        _wait_listening(port, process)
        yield _SinkCounter(process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 5).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError(f"smtp-sink did not listen on port {port}")


@dataclass(frozen=True)
class Hop:
    """One measured batch through the Postfix hop."""

    count: int
    seconds: float  # first submission until smtp-sink counted the last message
    cpu_seconds: float  # user + system time of the master and its daemons over the batch

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def cpu_per_message(self) -> float:
        return self.cpu_seconds / self.count


def measure(size: int, count: int, timeout: float = BUDGET) -> Hop:
    """Send ``count`` messages of ``size`` bytes through one Postfix hop and time them.

    The CPU time is that of Postfix's processes (its master's process group: smtpd,
    cleanup, trivial-rewrite, qmgr, smtp, ...), not of smtp-source or smtp-sink, read
    before the batch and again once Postfix is idle after it. Raises TimeoutError if
    smtp-sink has not received them all within ``timeout`` seconds.
    """
    sink_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="postfix-bench-") as tmp,
        _smtp_sink(sink_port) as sink,
        start_postfix(Path(tmp), relayhost=("127.0.0.1", sink_port)) as relay,
    ):
        source = [
            "smtp-source", "-s", str(SESSIONS), "-m", str(count), "-l", str(size),
            "-f", "from@a.test", "-t", "to@b.test", f"127.0.0.1:{relay.port}",
        ]  # fmt: skip
        group = relay.master_pid()
        if group is None:
            raise RuntimeError("Postfix wrote no master.pid")
        settle([group], timeout=10)
        cpu = group_cpu_seconds(group)
        started = time.perf_counter()
        submit = subprocess.Popen(source, stdin=subprocess.DEVNULL)
        try:
            if not sink.wait_for(count, timeout):
                raise TimeoutError(
                    f"{sink.messages} of {count} messages relayed in {timeout:.1f} s\n"
                    + relay.log_tail(10)
                )
            elapsed = time.perf_counter() - started
        finally:
            submit.kill()
            submit.wait()
        settle([group], timeout=10)
        cpu = group_cpu_seconds(group) - cpu
    return Hop(count, elapsed, cpu)


def _table(rows: Sequence[tuple[int, Hop]], markdown: bool) -> str:
    header = ("size", "messages", "seconds", "messages/s", "CPU ms/msg")
    cells = [
        (f"{s // 1024} KiB", str(h.count), f"{h.seconds:.1f}", f"{h.rate:.0f}",
         f"{h.cpu_per_message * 1e3:.2f}")
        for s, h in rows
    ]  # fmt: skip
    if markdown:
        lines = [header, ("---:",) * 5, *cells]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    return "\n".join("".join(f"{c:>12}" for c in line) for line in [header, *cells])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="messages per size")
    parser.add_argument("--sizes", default="4096,65536", help="payload bytes, comma-separated")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + BUDGET
    rows = []
    for size in (int(text) for text in args.sizes.split(",")):
        hop = measure(size, args.count, timeout=max(deadline - time.monotonic(), 1.0))
        rows.append((size, hop))
    version = subprocess.run(
        ["postconf", "-h", "mail_version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"Postfix {version}, {os.cpu_count()} CPUs, {platform.platform()}; {SESSIONS} sessions")
    print(_table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
