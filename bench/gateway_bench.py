"""Throughput, latency and CPU per message end to end: gateway A → gateway B, two real nodes.

Run from the repository root, as root (the Postfix reference needs it)::

    python bench/gateway_bench.py                  # 1000 x 4 KiB and 300 x 64 KiB (3-4 min)
    python bench/gateway_bench.py --quick          # smoke run, 50 x 4 KiB per database (.ci/run)
    python bench/gateway_bench.py --markdown       # Markdown table, for docs/performance.md
    python bench/gateway_bench.py --no-postgres --no-postfix --count 500
    python bench/gateway_bench.py --sizes 4 --no-scaling   # 4 KiB only, no scaling rows
    python bench/gateway_bench.py --sizes 4 --two-nodes-only --scaling-count 500
    python bench/gateway_bench.py --py-spy /tmp/profiles   # also profile both nodes
    python bench/gateway_bench.py --count-sql      # also transactions, commits, statements

The demo federation is founded once (securemail.demo.federation.found). For each database
(SQLite, then PostgreSQL in a fresh schema per node) and message size, the agency node
(gateway A) and the provider node (gateway B) start as separate processes with empty queues
and mailboxes, and the benchmark's sender and recipient get their accounts again (the
provider delivers only to accounts). ``--sessions`` SMTP clients (a new connection per
message, as the Postfix reference's smtp-source does) submit N messages to A's relay
listener; A signs, encrypts and relays each over pinned STARTTLS to B, which decrypts,
verifies and delivers into a Maildir. A thread in this process scans B's Maildir every
50 ms (no inotify) and takes when each Message-ID arrived from its file's change time (to
the millisecond, however seldom it scans). Throughput is N over the time from the first
submission to the last delivery; latency runs from the 250 reply to DATA to the file's
arrival. Each node's CPU time (user + system of its process group, /proc) is read
once the nodes are idle after a warm-up and again once they are idle after the batch, so it
includes the work a message causes after its delivery (the signed receipt going back).

It fails fast, with one line on stderr and a non-zero exit, rather than wait for its time
limit: when A refuses a message, a failure notice comes back to the sender's mailbox on A,
no message is delivered for 30 s (20 s with ``--quick``: a stall), a node exits, or a
message is delivered twice. ``--quick`` checks exactly that and nothing about speed.

Beside these, in the same run: the crypto ceiling (one process, one core, protect then
unprotect with the federation's own agency and provider keys, messages/s) and the plain
Postfix relay hop with its CPU time (bench/postfix_reference.py); and the scaling rows
(bench/scaling.py): A's outbound path alone with ``workers = 1`` and ``workers = "auto"``
(to an accepting sink in a process of its own), and two sending nodes on one PostgreSQL
(not with ``--quick``). The whole run is bounded (900 s, 240 s with ``--quick``): past that
it stops with a message saying so. Node processes are stopped on every exit path. The
table's notes give the benchmark's own CPU per message (its clients and scans share the
cores with the nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import psycopg

from postfix_reference import Hop
from postfix_reference import measure as postfix_measure
from proc_cpu import (
    cpu_seconds,
    group_cpu_seconds,
    main_thread_cpu_seconds,
    own_cpu_seconds,
    settle,
)
from scaling import Sink, SinkError, reset_second, second_node, sink, with_workers
from securemail.config.anchors import load_anchors
from securemail.config.node import load_config
from securemail.demo.federation import NodeSetup, add_people, found
from securemail.directory.document import verify_document
from securemail.directory.fetch import Source
from securemail.keys.org import OrgKeys
from securemail.node.context import load_org_keys, read_passphrase
from securemail.smime import TrustStore, protect, unprotect
from smime_bench import make_message, markdown_table, plain_table, revision
from sql_counter import PERIOD as SQL_COUNT_PERIOD
from sql_counter import totals

KIB = 1024
BUDGET, QUICK_BUDGET = 900, 240  # seconds for the whole run (a loaded machine founds slowly)
SCALING_COUNT = 500  # messages in each scaling row (bench/scaling.py)
COUNTS = {4 * KIB: 1000, 64 * KIB: 300}
QUICK_COUNTS = {4 * KIB: 50}
WARMUP = 16
STALL, QUICK_STALL = 30.0, 20.0  # seconds without a delivery that count as a stall
SETTLE = 20.0  # seconds to wait for idle nodes after a batch (receipts, clean-up)
POSTGRES = "postgresql://root@127.0.0.1:5432/test"
SENDER = "aroha.ngata@agency.govt.nz"
RECIPIENT = "hemi.walker@securemail.provider.nz"
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
_NOTICE_FIELDS = re.compile(
    rb"^(Status|X-SecureMail-Reason|Diagnostic-Code):[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE
)


class BudgetExceededError(Exception):
    """The run passed its time budget."""


class RunFailedError(Exception):
    """A gateway run could not finish: a node did not start or died, mail was refused,
    bounced, lost or duplicated, or the pipeline stalled. The message is one line."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the messages


def message_template(size: int) -> tuple[bytes, bytes]:
    """Header lines before the Message-ID and the rest, for a body of ``size`` bytes."""
    head, body = make_message(size).split(b"\r\n\r\n", 1)
    content = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-")]
    before = (
        f"From: Aroha Ngata <{SENDER}>\r\nTo: <{RECIPIENT}>\r\n"
        "Subject: [IN-CONFIDENCE] Benchmark\r\nDate: Sun, 29 Nov 2026 12:00:00 +1300\r\n"
        "Message-ID: "
    ).encode()
    after = b"\r\nMIME-Version: 1.0\r\n" + b"\r\n".join(content) + b"\r\n\r\n" + body
    return before, after


def message_id(tag: str, n: int) -> str:
    return f"<bench-{tag}-{n}@agency.govt.nz>"


# --------------------------------------------------------------------------- the nodes


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark dies without cleaning up (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def reset_node(setup: NodeSetup, database: str | None, original: str, passphrase: bytes) -> None:
    """Empty queue, accounts and mailboxes; the node's database (None: SQLite in data/).

    The accounts live in the node's database, so the benchmark's people get theirs again,
    as the demo gave them: the recipient on the provider (which delivers only to accounts:
    without one it answers 550 5.1.1), the sender on the agency.
    """
    shutil.rmtree(setup.config.parent / "data", ignore_errors=True)
    for item in setup.mail.iterdir():
        shutil.rmtree(item)
    text = original
    if database is not None:
        text = text.replace("[node]\n", f'[node]\ndatabase = "{database}"\n', 1)
    setup.config.write_text(text)
    person = RECIPIENT if setup.name == "provider" else SENDER
    add_people(load_config(setup.config), passphrase, {person: secrets.token_urlsafe(12)})


def start_node(setup: NodeSetup, log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "securemail", "serve", "--config", str(setup.config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # Ctrl-C reaches us; we stop the nodes in order
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run yet at this point
        )


def wait_ready(setup: NodeSetup, process: subprocess.Popen[bytes], log_file: Path) -> None:
    ports = setup.config.parent / "data" / "ports.json"
    deadline = time.monotonic() + 60
    while not ports.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            log(log_file.read_text(errors="replace")[-2000:])
            raise RunFailedError(f"node {setup.name} did not start (the end of its log above)")
        time.sleep(0.05)


def stop_node(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # the node closes its listeners, then finishes what it holds
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running(
    setups: Sequence[NodeSetup], logs: Path, profile: Path | None, label: str
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Both nodes serving (ports.json written), by node name; stopped (and profiles
    written) at exit. Each node leads its own process group (its CPU time is the group's)."""
    processes: list[subprocess.Popen[bytes]] = []
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        for setup in setups:
            log_file = logs / f"{label}-{setup.name}.log"
            processes.append(start_node(setup, log_file))
            wait_ready(setup, processes[-1], log_file)
            if profile is not None:
                profilers.append(py_spy(processes[-1].pid, profile / f"{label}-{setup.name}"))
        yield {setup.name: process for setup, process in zip(setups, processes, strict=True)}
    finally:
        for process in processes:
            stop_node(process)
        for profiler in profilers:
            stop_node(profiler)


def py_spy(pid: int, stem: Path) -> subprocess.Popen[bytes]:
    """Sample every thread of ``pid`` until it exits (collapsed stacks, for flame graphs)."""
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--threads"]
    command += ["--rate", "200", "--output", f"{stem}.txt", "--nonblocking"]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def postgres_schemas(names: Sequence[str]) -> Iterator[dict[str, str]]:
    """A fresh schema per node; the database URL for each; dropped at exit."""
    schemas = {name: f"bench_{name}_{secrets.token_hex(4)}" for name in names}
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=10) as admin:
        try:
            for schema in schemas.values():
                admin.execute(f"CREATE SCHEMA {schema}")
            yield {n: f"{POSTGRES}?options=-csearch_path%3D{s}" for n, s in schemas.items()}
        finally:
            for schema in schemas.values():
                admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# --------------------------------------------------------------------------- measuring


class MaildirWatch:
    """Notes when each Message-ID first appeared in a Maildir, and how often (polling).

    Verified mail arrives in cur/ (it carries the $SecureMail keyword); other mail in new/.
    A scan every ``interval`` lists both folders and reads each new file's header once;
    when a file appeared is its inode's change time (the node links it into place, syncs
    the folder and unlinks its tmp/ name, each of which sets it; nothing touches it after),
    on this process's monotonic clock: the kernel's file timestamps keep it within a
    millisecond or so (at worst one scheduler tick), however seldom the folders are scanned.
    """

    def __init__(self, mailbox: Path, interval: float = 0.05) -> None:
        self.folders = (mailbox / "new", mailbox / "cur")
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.copies: dict[str, int] = {}  # Message-ID (or file name, without one) -> files
        self.heads: list[bytes] = []  # the header of each file, in order of appearance
        self._entries: set[str] = set()  # every file name listed so far
        self._names: set[str] = set()  # the same without ":2,flags" (a move to cur/ adds it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MaildirWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self._scan()  # what arrived since the last scan

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(FileNotFoundError):
                self._scan()

    def _scan(self) -> None:
        fresh = []
        for folder in self.folders:
            with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
                fresh += [e for e in entries if e.name not in self._entries]
        offset = time.time() - time.monotonic()  # file times are wall-clock
        for entry in fresh:
            self._entries.add(entry.name)
            name = entry.name.split(":")[0]
            if name in self._names:
                continue  # the same file, moved from new/ to cur/
            self._names.add(name)
            try:
                with open(entry.path, "rb") as file:
                    changed = os.fstat(file.fileno()).st_ctime_ns / 1e9
                    head = file.read(16 * KIB)
            except FileNotFoundError:
                self._entries.discard(entry.name)  # moved while we looked: the next scan
                self._names.discard(name)
                continue
            found_id = _MESSAGE_ID.search(head.split(b"\n\r\n", 1)[0].split(b"\n\n", 1)[0])
            key = found_id.group(1).decode() if found_id else name
            self.seen.setdefault(key, changed - offset)
            self.copies[key] = self.copies.get(key, 0) + 1
            self.heads.append(head)


def notice_summary(head: bytes) -> str:
    """The status, reason code and remote reply of a delivery status notice, on one line."""
    fields = {
        m.group(1).decode().lower(): m.group(2).decode() for m in _NOTICE_FIELDS.finditer(head)
    }
    parts = [fields.get("x-securemail-reason"), fields.get("status"), fields.get("diagnostic-code")]
    return "; ".join(p for p in parts if p) or "no reason in its first 16 KiB"


@dataclass
class Pipeline:
    """What the benchmark watches while mail is in flight: the nodes and both mailboxes.

    Any file in the sender's mailbox is a failure notice (nothing else writes to it here);
    a dead node, a notice or no delivery for ``stall`` seconds fails the run at once.
    """

    processes: dict[str, subprocess.Popen[bytes]]
    delivered: MaildirWatch  # the recipient's mailbox on gateway B
    notices: MaildirWatch  # the sender's mailbox on gateway A
    stall: float

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RunFailedError(f"node {name} exited with status {process.returncode}")
        if self.notices.heads:
            count, first = len(self.notices.heads), notice_summary(self.notices.heads[0])
            raise RunFailedError(f"{count} failure notice(s) came back to the sender: {first}")

    async def wait_for(self, ids: Sequence[str]) -> None:
        """Until every id is delivered; fail fast on a stall, a notice or a dead node."""
        wanted, progress, last = set(ids), -1, time.monotonic()
        while True:
            self.check()
            done = len(wanted.intersection(self.delivered.seen))
            if done == len(ids):
                return
            if done != progress:
                progress, last = done, time.monotonic()
            elif time.monotonic() - last > self.stall:
                raise RunFailedError(
                    f"pipeline stalled: {done} of {len(ids)} messages delivered, "
                    f"none for {self.stall:.0f} s"
                )
            remaining()
            await asyncio.sleep(0.05)  # the delivery times come from the files, not from here

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each node's process group, and of each node's main thread
        (under "<name> main")."""
        groups = {name: group_cpu_seconds(p.pid) for name, p in self.processes.items()}
        mains = {f"{n} main": main_thread_cpu_seconds(p.pid) for n, p in self.processes.items()}
        return groups | mains

    def settle(self) -> bool:
        return settle([p.pid for p in self.processes.values()], timeout=SETTLE)

    def sql(self, directory: Path | None) -> dict[str, Counter[str]]:
        """Each node's database work so far (``--count-sql``; empty without it)."""
        if directory is None:
            return {}
        time.sleep(3 * SQL_COUNT_PERIOD)  # the nodes' counters write their totals
        return {name: totals(directory, p.pid) for name, p in self.processes.items()}


@dataclass(frozen=True)
class Result:
    count: int
    seconds: float  # first submission to last delivery
    latencies: tuple[float, ...]  # 250 to file in the Maildir, seconds
    cpu: dict[str, float]  # node name -> CPU seconds of its processes over the batch
    settled: bool  # whether the nodes went idle after the batch (else CPU is a lower bound)
    harness: float  # CPU seconds of the benchmark's own process, first submission to last seen
    sink: float | None = None  # CPU seconds of the sink process (outbound path alone), same span
    sql: dict[str, Counter[str]] = field(default_factory=dict)  # node -> work (--count-sql)

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, p: float) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(p) - 1]

    def cpu_per_message(self, node: str | None = None) -> float:
        """CPU seconds per message of ``node`` ("agency", "provider", "agency main"...), or
        of both nodes together."""
        if node is None:
            return (self.cpu["agency"] + self.cpu.get("provider", 0.0)) / self.count
        return self.cpu[node] / self.count


class SmtpRefusedError(Exception):
    """A reply other than the one expected: the reply code and text, on one line."""


async def _reply(reader: asyncio.StreamReader, expected: int) -> list[bytes]:
    """Read one (possibly multi-line) reply, its lines; fail unless its code is ``expected``."""
    lines: list[bytes] = []
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise SmtpRefusedError(f"connection closed, expecting {expected} ({line!r})")
        lines.append(line.rstrip(b"\r\n"))
        if line[3:4] != b"-":
            break
    if not lines[-1][:3].isdigit() or int(lines[-1][:3]) != expected:
        text = " ".join(part.decode(errors="replace") for part in lines)
        raise SmtpRefusedError(f"{text} (expected {expected})")
    return lines


async def send_one(port: int, data: bytes, size: int) -> float:
    """One message over a new plain SMTP connection to 127.0.0.1:``port``: the greeting,
    EHLO, MAIL (with SIZE= the message's ``size`` where offered, as aiosmtplib sends it),
    RCPT, DATA (``data`` already dot-stuffed, ending in CRLF, sent with the final dot in
    one write), QUIT, each reply checked; when the 250 to DATA came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * KIB)
    try:
        await _reply(reader, 220)
        writer.write(b"EHLO bench.invalid\r\n")
        offered = await _reply(reader, 250)
        sized = any(line[4:].upper().startswith(b"SIZE") for line in offered[1:])
        mail = f"MAIL FROM:<{SENDER}>{f' SIZE={size}' if sized else ''}\r\n"
        for command, expected in (
            (mail.encode(), 250),
            (f"RCPT TO:<{RECIPIENT}>\r\n".encode(), 250),
            (b"DATA\r\n", 354),
            (data + b".\r\n", 250),
        ):
            writer.write(command)
            await _reply(reader, expected)
        accepted = time.monotonic()
        writer.write(b"QUIT\r\n")
        await _reply(reader, 221)
        return accepted
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def dot_stuffed(template: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """The message template as sent after DATA: a leading dot doubled on every line; the
    Message-ID goes mid-line between the two parts, so each part is stuffed on its own."""
    before, after = (re.sub(rb"(?m)^\.", b"..", part) for part in template)
    return before, after if after.endswith(b"\r\n") else after + b"\r\n"


async def submit_all(
    ports: Sequence[int], template: tuple[bytes, bytes], ids: Sequence[str], sessions: int
) -> dict[str, float]:
    """Submit one message per id over ``sessions`` parallel clients (a new connection per
    message), each to one of ``ports`` in turn; when each got its 250."""
    pending = list(reversed(ids))
    accepted: dict[str, float] = {}
    before, after = dot_stuffed(template)
    size = len(template[0]) + len(template[1])

    async def client(port: int) -> None:
        while pending:
            mid = pending.pop()
            data = before + mid.encode() + after
            try:
                async with asyncio.timeout(30):
                    accepted[mid] = await send_one(port, data, size + len(mid))
            except (SmtpRefusedError, OSError, TimeoutError) as error:
                detail = " ".join(str(error).split()) or type(error).__name__
                raise RunFailedError(f"gateway A refused {mid}: {detail}") from error

    await asyncio.gather(*(client(ports[n % len(ports)]) for n in range(sessions)))
    return accepted


async def drive(
    setups: dict[str, NodeSetup],
    processes: dict[str, subprocess.Popen[bytes]],
    size: int,
    count: int,
    args: argparse.Namespace,
    *,
    senders: Sequence[str] = ("agency",),
) -> Result:
    """Warm up, then submit ``count`` messages to A and wait for all of them at B.

    The nodes' CPU time is read once they are idle after the warm-up and again once they
    are idle after the batch; every message must arrive exactly once. With several
    ``senders`` the clients submit to each in turn, and their CPU counts as A's.
    """
    template = message_template(size)
    port = [setups[name].relay_port for name in senders]
    with (
        MaildirWatch(setups["provider"].mailbox(RECIPIENT)) as delivered,
        MaildirWatch(setups["agency"].mailbox(SENDER)) as notices,
    ):
        pipeline = Pipeline(processes, delivered, notices, args.stall)
        warm = [message_id("warm", n) for n in range(args.warmup)]
        await submit_all(port, template, warm, args.sessions)
        await pipeline.wait_for(warm)
        pipeline.settle()
        cpu = pipeline.cpu()
        sql = pipeline.sql(args.count_sql)
        ids = [message_id("run", n) for n in range(count)]
        started, harness = time.monotonic(), own_cpu_seconds()
        accepted = await submit_all(port, template, ids, args.sessions)
        pipeline.check()
        await pipeline.wait_for(ids)
        harness = own_cpu_seconds() - harness
        settled = pipeline.settle()
        cpu = fold({name: seconds - cpu[name] for name, seconds in pipeline.cpu().items()})
        sql = {name: work - sql[name] for name, work in pipeline.sql(args.count_sql).items()}
        pipeline.check()
    twice = [i for i in ids if delivered.copies[i] > 1]
    if twice:
        raise RunFailedError(f"{len(twice)} messages delivered more than once, e.g. {twice[0]}")
    delivered_at = [delivered.seen[i] for i in ids]
    latencies = tuple(delivered.seen[i] - accepted[i] for i in ids)
    return Result(count, max(delivered_at) - started, latencies, cpu, settled, harness, sql=sql)


def fold(cpu: dict[str, float]) -> dict[str, float]:
    """A second sending node's CPU ("agency-2", "agency-2 main") added to A's."""
    for name in ("agency-2", "agency-2 main"):
        if name in cpu:
            cpu[name.replace("agency-2", "agency")] += cpu.pop(name)
    return cpu


async def drive_outbound(
    setups: dict[str, NodeSetup],
    process: subprocess.Popen[bytes],
    accepting: Sink,
    size: int,
    args: argparse.Namespace,
) -> Result:
    """As :func:`drive`, for gateway A alone relaying to a peer that only accepts
    (``args.scaling_count`` messages); the sink process's CPU counts as the harness's."""
    count = args.scaling_count
    template, port = message_template(size), [setups["agency"].relay_port]
    sink_pid = accepting.process.pid
    assert sink_pid is not None  # started
    with MaildirWatch(setups["agency"].mailbox(SENDER)) as notices:
        pipeline = Pipeline({"agency": process}, notices, notices, args.stall)
        warm = [message_id("warm-out", n) for n in range(args.warmup)]
        await submit_all(port, template, warm, args.sessions)
        await wait_seen(pipeline, accepting, warm, args.stall)
        pipeline.settle()
        cpu = pipeline.cpu()
        ids = [message_id("out", n) for n in range(count)]
        started, harness, sunk = time.monotonic(), own_cpu_seconds(), cpu_seconds(sink_pid)
        accepted = await submit_all(port, template, ids, args.sessions)
        await wait_seen(pipeline, accepting, ids, args.stall)
        harness, sunk = own_cpu_seconds() - harness, cpu_seconds(sink_pid) - sunk
        settled = pipeline.settle()
        cpu = {name: seconds - cpu[name] for name, seconds in pipeline.cpu().items()}
    seen, copies = accepting.results()
    twice = [i for i in ids if copies[i] > 1]
    if twice:
        raise RunFailedError(f"{len(twice)} messages relayed more than once, e.g. {twice[0]}")
    latencies = tuple(seen[i] - accepted[i] for i in ids)
    last = max(seen[i] for i in ids)
    return Result(count, last - started, latencies, cpu, settled, harness, sunk)


async def wait_seen(pipeline: Pipeline, accepting: Sink, ids: Sequence[str], stall: float) -> None:
    """Until the sink has every id; fail fast on a stall or a dead node or sink."""
    accepting.expect(ids)
    progress, last = -1, time.monotonic()
    while True:
        pipeline.check()
        if not accepting.process.is_alive():
            raise RunFailedError(f"the sink exited with status {accepting.process.exitcode}")
        if (done := accepting.arrived()) == len(ids):
            return
        if done != progress:
            progress, last = done, time.monotonic()
        elif time.monotonic() - last > stall:
            raise RunFailedError(f"stalled: {done} of {len(ids)} relayed, none for {stall:.0f} s")
        remaining()
        await asyncio.sleep(0.05)


def crypto_ceiling(setups: dict[str, NodeSetup], size: int, seconds: float) -> tuple[float, float]:
    """Messages/s of protect + unprotect in one loop on one core, with the nodes' keys, and
    the CPU seconds per message (this thread's; on a loaded machine less than 1 / rate)."""
    agency, provider = (load_config(setups[n].config) for n in ("agency", "provider"))
    passphrase = read_passphrase(agency)
    sender = load_org_keys(agency.organisations[0], passphrase)
    receiver = load_org_keys(provider.organisations[0], passphrase)
    now = datetime.now(UTC)
    anchors = load_anchors(provider.anchor)
    fetched = Source(provider.directory).fetch()
    directory = verify_document(
        fetched.document, fetched.signature, anchors=list(anchors), now=now,
        federation=provider.federation,
    )  # fmt: skip
    trust = TrustStore(anchors, directory.crls)  # as the node's: anchors + directory CRLs
    before, after = message_template(size)
    message = before + message_id("crypto", 0).encode() + after
    round_trip(message, sender, receiver, trust, now)  # warm (path cache) and check
    done, started, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - started < seconds:
        round_trip(message, sender, receiver, trust, now)
        done += 1
    return done / (time.perf_counter() - started), (time.thread_time() - cpu) / done


def round_trip(
    message: bytes, sender: OrgKeys, receiver: OrgKeys, trust: TrustStore, now: datetime
) -> None:
    recipient = receiver.identities[0].certificate
    protected = protect(message, sender.signer, [recipient], now=now, canonical=True)
    opened = unprotect(
        protected.message, identities=receiver.identities, trust=trust, now=now,
        require_encryption=True,
    )  # fmt: skip
    if opened.content != message:
        raise RunFailedError("the in-process round trip did not return the message")


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Row:
    size: int
    path: str
    count: int
    rate: float | None  # messages/s; None: not measured
    result: Result | None = None
    hop: Hop | None = None  # the Postfix reference's batch
    cpu: float | None = None  # CPU seconds per message, where measured in this process
    note: str = ""

    @property
    def cpu_ms(self) -> tuple[float | None, float | None, float | None]:
        """CPU ms per message: gateway A, gateway B, and everything the path runs."""
        if self.result is not None:
            a = self.result.cpu_per_message("agency") * 1e3
            b = None  # no gateway B on the outbound path alone
            if "provider" in self.result.cpu:
                b = self.result.cpu_per_message("provider") * 1e3
            return a, b, self.result.cpu_per_message() * 1e3
        if self.hop is not None:
            return None, None, self.hop.cpu_per_message * 1e3
        return None, None, None if self.cpu is None else self.cpu * 1e3


_DEADLINE = [0.0]


def remaining() -> float:
    left = _DEADLINE[0] - time.monotonic()
    if left <= 0:
        raise BudgetExceededError
    return left


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise BudgetExceededError


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def gateway_rows(
    args: argparse.Namespace, setups: dict[str, NodeSetup], root: Path, passphrase: bytes
) -> list[Row]:
    pair = [setups["agency"], setups["provider"]]
    originals = {s.name: s.config.read_text() for s in pair}
    rows = []
    for database in ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]:
        for size, count in args.counts.items():
            label = f"{database}-{size // KIB}k"
            log(f"gateway A -> B, {database}, {count} x {size // KIB} KiB ...")
            with contextlib.ExitStack() as stack:
                urls: dict[str, str] = {}
                if database == "postgresql":
                    urls = stack.enter_context(postgres_schemas([s.name for s in pair]))
                for setup in pair:
                    reset_node(setup, urls.get(setup.name), originals[setup.name], passphrase)
                processes = stack.enter_context(running(pair, root, args.py_spy, label))
                result = asyncio.run(drive(setups, processes, size, count, args))
            log(f"  CPU per message, {cpu_split(result)}")
            for name, work in sorted(result.sql.items()):
                log(f"  database work per message, {name}: {sql_split(work, result.count)}")
            if not result.settled:
                log(f"  nodes still busy {SETTLE:.0f} s after the batch: CPU is a lower bound")
            title = "SQLite" if database == "sqlite" else "PostgreSQL"
            rows.append(Row(size, f"gateway A → B, {title}", count, result.rate, result))
    return rows


def scaling_rows(
    args: argparse.Namespace,
    setups: dict[str, NodeSetup],
    root: Path,
    passphrase: bytes,
    originals: dict[str, str],
) -> list[Row]:
    """The outbound path alone by worker processes, and two nodes on one PostgreSQL
    (bench/scaling.py), at the first size; ``originals``: each node's node.toml as the
    demo wrote it."""
    size = min(args.counts)
    count = args.scaling_count
    agency, provider = setups["agency"], setups["provider"]
    rows = []
    for workers in ("1", "auto"):
        log(f"outbound path alone, workers = {workers}, {count} x {size // KIB} KiB ...")
        reset_node(agency, None, with_workers(originals["agency"], workers), passphrase)
        try:
            with (
                sink(provider) as accepting,
                running([agency], root, args.py_spy, f"outbound-{workers}") as up,
            ):
                driven = drive_outbound(setups, up["agency"], accepting, size, args)
                result = asyncio.run(driven)
        except SinkError as error:
            raise RunFailedError(str(error)) from error
        processes = load_config(agency.config).workers
        label = "1" if workers == "1" else f"auto ({processes} worker processes)"
        path = f"A's outbound path alone, workers = {label}"
        rows.append(Row(size, path, count, result.rate, result))
    agency.config.write_text(originals["agency"])
    if args.no_postgres:
        log("two nodes on one PostgreSQL: skipped (--no-postgres)")
        return rows
    return rows + two_node_rows(args, setups, root, passphrase, originals)


def two_node_rows(
    args: argparse.Namespace,
    setups: dict[str, NodeSetup],
    root: Path,
    passphrase: bytes,
    originals: dict[str, str],
) -> list[Row]:
    """Two sending nodes of one member on one PostgreSQL database, to gateway B."""
    size, count = min(args.counts), args.scaling_count
    agency, provider = setups["agency"], setups["provider"]
    log(f"two nodes A + A' -> B on one PostgreSQL, {count} x {size // KIB} KiB ...")
    second = second_node(agency)
    both = {**setups, "agency-2": second}
    with postgres_schemas(["agency", "provider"]) as urls:
        reset_node(agency, urls["agency"], originals["agency"], passphrase)
        reset_second(second, second.config.read_text(), urls["agency"])
        reset_node(provider, urls["provider"], originals["provider"], passphrase)
        with running([agency, second, provider], root, args.py_spy, "two-nodes") as up:
            result = asyncio.run(drive(both, up, size, count, args, senders=("agency", "agency-2")))
    log(f"  CPU per message, {cpu_split(result)}")
    path = "two nodes A + A' → B, one PostgreSQL"
    return [Row(size, path, count, result.rate, result)]


def sql_split(work: Counter[str], count: int) -> str:
    """A node's transactions, commits and statements (by kind) per message."""
    named = ["transactions", "commits", "statements"]
    named += sorted(k for k in work if k.startswith("statements "))
    return ", ".join(f"{k} {work[k] / count:.2f}" for k in [*named, "executemany rows"])


def cpu_split(result: Result) -> str:
    """Each node's CPU per message: its main thread (the event loop) and its other threads."""
    parts = []
    for node in ("agency", "provider"):
        main = result.cpu_per_message(f"{node} main") * 1e3
        rest = result.cpu_per_message(node) * 1e3 - main
        parts.append(f"{node}: {main:.1f} ms main thread + {rest:.1f} ms other threads")
    return ", ".join(parts)


def reference_rows(args: argparse.Namespace, setups: dict[str, NodeSetup]) -> list[Row]:
    rows = []
    for size, count in args.counts.items():
        log(f"crypto ceiling at {size // KIB} KiB ...")
        rate, cpu = crypto_ceiling(setups, size, 3.0)
        rows.append(Row(size, "crypto ceiling: protect + unprotect, 1 core", 0, rate, cpu=cpu))
        if args.no_postfix:
            continue
        log(f"Postfix relay hop, {count} x {size // KIB} KiB ...")
        try:
            hop = postfix_measure(size, count, timeout=remaining())
            rows.append(Row(size, "Postfix relay hop (reference)", count, hop.rate, hop=hop))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            rows.append(Row(size, "Postfix relay hop (reference)", count, None, note=str(error)))
    return rows


# --------------------------------------------------------------------------- the report

HEADERS = [
    "size", "path", "messages", "msg/s", "p50 ms", "p99 ms", "x Postfix",
    "CPU ms/msg A", "CPU ms/msg B", "CPU ms/msg total",
]  # fmt: skip


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    postfix = {r.size: r.rate for r in rows if r.path.startswith("Postfix")}
    cells = []
    for row in sorted(rows, key=lambda r: r.size):
        reference = postfix.get(row.size)
        ratio = f"{row.rate / reference:.2f}x" if row.rate and reference else "-"
        rate = f"{row.rate:.0f}" if row.rate else f"not measured: {row.note[:60]}"
        p50 = p99 = None
        if row.result is not None:
            p50, p99 = row.result.percentile(50) * 1e3, row.result.percentile(99) * 1e3
        count = str(row.count) if row.count else "-"
        cpu = [_ms(ms, 2) for ms in row.cpu_ms]
        cells.append(
            [f"{row.size // KIB} KiB", row.path, count, rate, _ms(p50, 0), _ms(p99, 0), ratio, *cpu]
        )
    return cells


# The bars (issue 14, "Must show"): (size, database) -> least ratio to the Postfix hop.
TARGET_RATIOS = {(4, "SQLite"): 0.4, (4, "PostgreSQL"): 0.3, (64, "SQLite"): 0.3}
TARGET_RATIOS[64, "PostgreSQL"] = 0.3
TARGET_P99 = 1.0  # seconds, at 4 KiB
TARGET_CPU_MS = 6.0  # sender + receiver node together, per message at 4 KiB


def verdicts(rows: Sequence[Row]) -> list[str]:
    """The issue's bars, each PASS or MISS (or not measured)."""
    postfix = {r.size // KIB: r.rate for r in rows if r.path.startswith("Postfix")}
    lines = []
    for row in rows:
        if row.result is None or not row.path.startswith("gateway A"):
            continue
        size, database = row.size // KIB, row.path.rpartition(", ")[2]
        where = f"{size} KiB, {database}"
        reference = postfix.get(size)
        bar = TARGET_RATIOS.get((size, database))
        if bar is not None and reference:
            ratio = row.result.rate / reference
            lines.append(
                _verdict(where, f"≥ {bar}x the Postfix hop", ratio >= bar, f"{ratio:.2f}x")
            )
        if size == 4:
            p99 = row.result.percentile(99)
            lines.append(
                _verdict(where, f"p99 ≤ {TARGET_P99:g} s", p99 <= TARGET_P99, f"{p99:.2f} s")
            )
            cpu = row.result.cpu_per_message() * 1e3
            lines.append(
                _verdict(where, f"CPU A + B ≤ {TARGET_CPU_MS:g} ms/msg", cpu <= TARGET_CPU_MS,
                         f"{cpu:.1f} ms")
            )  # fmt: skip
    lines += workers_verdict(rows)
    return lines or ["targets: not measured"]


TARGET_WORKERS = 1.5  # one node's outbound path: workers = auto against workers = 1


def workers_verdict(rows: Sequence[Row]) -> list[str]:
    """The outbound path alone: ``workers = auto`` against ``workers = 1``, same run."""
    alone = {r.path.rpartition("= ")[2][:4]: r.rate for r in rows if "path alone" in r.path}
    one, auto = alone.get("1"), alone.get("auto")
    if not one or not auto:
        return []
    ratio = auto / one
    target = f"workers = auto ≥ {TARGET_WORKERS}x workers = 1"
    return [_verdict("the outbound path alone", target, ratio >= TARGET_WORKERS, f"{ratio:.2f}x")]


def _verdict(where: str, target: str, ok: bool, value: str) -> str:
    return f"target at {where}, {target}: {'PASS' if ok else 'MISS'} ({value})"


def harness_note(rows: Sequence[Row]) -> str:
    """The benchmark's own CPU per message in each measured row (it shares the cores)."""
    parts = []
    for row in rows:
        if row.result is None:
            continue
        own = row.result.harness / row.result.count * 1e3
        text = f"{row.path}, {row.size // KIB} KiB: {own:.2f}"
        if row.result.sink is not None:
            text += f" + {row.result.sink / row.result.count * 1e3:.2f} in the sink process"
        parts.append(text)
    return (
        "harness CPU ms/msg (user + system time of this benchmark's process: SMTP clients, "
        f"Maildir scans; first submission to last arrival): {'; '.join(parts) or '-'}"
    )


def report(args: argparse.Namespace, rows: Sequence[Row], elapsed: float) -> None:
    info = [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; securemail {revision()}",
        f"machine: nproc {os.cpu_count()}; both nodes, the clients and the references share "
        f"it; load average {args.load:.2f} before the run (other work on the machine)",
        f"{args.sessions} client sessions, a new SMTP connection per message; warm-up "
        f"{args.warmup} messages per run; total run time {elapsed:.0f} s",
        "CPU: user + system time of each node's processes (/proc), from idle after the "
        "warm-up to idle after the batch, per message; Postfix: its master and daemons",
    ]
    info.append(harness_note(rows))
    body = table_rows(rows)
    if args.markdown:
        print("\n".join(f"- {line}" for line in info) + "\n")
        print(markdown_table(HEADERS, body))
        if not args.quick:
            print("\n" + "\n".join(f"- {line}" for line in verdicts(rows)))
    else:
        print("\n".join(info) + "\n")
        print(plain_table(HEADERS, body))
        if not args.quick:
            print("\n" + "\n".join(verdicts(rows)))


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, help="messages per size (default 1000 / 300)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 50 x 4 KiB per database, no references; fails only if the "
        "pipeline stalls, refuses, loses or duplicates a message",
    )
    parser.add_argument(
        "--sizes", help="message sizes in KiB, comma-separated (default 4,64; --quick 4)"
    )
    parser.add_argument("--sessions", type=int, default=8, help="parallel SMTP clients")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite queues only")
    parser.add_argument("--no-postfix", action="store_true", help="skip the Postfix reference")
    parser.add_argument(
        "--no-scaling",
        action="store_true",
        help="skip the outbound-alone (workers = 1 / auto) and two-node rows",
    )
    parser.add_argument(
        "--two-nodes-only",
        action="store_true",
        help="only the two-node row (A + A' -> B, one PostgreSQL), at the first size",
    )
    parser.add_argument(
        "--scaling-count",
        type=int,
        default=SCALING_COUNT,
        help=f"messages in each scaling row (default {SCALING_COUNT})",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="profile both nodes into DIR (collapsed)"
    )
    parser.add_argument(
        "--count-sql",
        action="store_const",
        const=Path(),
        help="count each node's transactions, commits and statements per message",
    )
    args = parser.parse_args(argv)
    counts = QUICK_COUNTS if args.quick else COUNTS
    if args.sizes:
        wanted = [int(k) * KIB for k in args.sizes.split(",")]
        counts = {size: counts.get(size, COUNTS[4 * KIB]) for size in wanted}
    args.counts = {size: args.count or n for size, n in counts.items()}
    args.warmup = WARMUP // 2 if args.quick else WARMUP
    args.stall = QUICK_STALL if args.quick else STALL
    args.budget = QUICK_BUDGET if args.quick else BUDGET
    if args.py_spy is not None:
        if shutil.which("py-spy") is None:
            parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
        args.py_spy.mkdir(parents=True, exist_ok=True)
    return args


def run(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        root = Path(tmp)
        passphrase = root / "passphrase.txt"
        passphrase.write_text(secrets.token_urlsafe(24) + "\n")
        log("founding the demo federation ...")
        setups = found(root, passphrase, datetime.now(UTC))
        secret = passphrase.read_bytes().strip()
        originals = {name: setup.config.read_text() for name, setup in setups.items()}
        if args.count_sql is not None:
            args.count_sql = root / "sql-count"
            args.count_sql.mkdir()
            count_sql(args.count_sql)
        if args.two_nodes_only:
            return two_node_rows(args, setups, root, secret, originals)
        rows = gateway_rows(args, setups, root, secret)
        if args.quick or args.no_scaling:
            why = "--quick" if args.quick else "--no-scaling"
            log(f"scaling rows (outbound alone by workers, two nodes on one PostgreSQL): "
                f"skipped ({why})")  # fmt: skip
        else:
            rows += scaling_rows(args, setups, root, secret, originals)
        return rows if args.quick else rows + reference_rows(args, setups)


def count_sql(directory: Path) -> None:
    """Nodes started from now on count their database work into ``directory``
    (bench/sqlcount/sitecustomize.py loads bench/sql_counter.py into them)."""
    hook = str(Path(__file__).resolve().parent / "sqlcount")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = hook if not path else f"{hook}{os.pathsep}{path}"
    os.environ["SECUREMAIL_SQL_COUNT"] = str(directory)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    args.load = os.getloadavg()[0]
    started = time.monotonic()
    _DEADLINE[0] = started + args.budget
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _terminate)
    signal.alarm(args.budget + 5)  # backstop for waits that do not check remaining()
    try:
        rows = run(args)
    except BudgetExceededError:
        log(f"gateway_bench: FAILED: over its {args.budget} s budget; try a smaller --count")
        return 2
    except RunFailedError as error:
        log(f"gateway_bench: FAILED: {error}")
        return 1
    except KeyboardInterrupt:
        log("gateway_bench: interrupted: nodes stopped, schemas dropped")
        return 130
    finally:
        signal.alarm(0)
    elapsed = time.monotonic() - started
    report(args, rows, elapsed)
    if args.quick:
        done = ", ".join(f"{r.count} on {r.path.rpartition(', ')[2]}" for r in rows)
        log(f"gateway_bench --quick: OK: every message delivered exactly once ({done}), "
            f"{elapsed:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
