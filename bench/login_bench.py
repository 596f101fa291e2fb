"""Mailbox logins per second: SMTP submission and IMAP with real accounts, against no login.

Run from the repository root::

    python bench/login_bench.py                 # 200 sessions per path and concurrency
    python bench/login_bench.py --quick         # smoke run (40 sessions, about 30 s)
    python bench/login_bench.py --markdown      # Markdown tables, for docs/performance.md
    python bench/login_bench.py --sessions 400 --concurrency 1,4,16

A child process plays the mail service provider's node, on loopback only: the real accounts
(``open_accounts`` on a fresh SQLite file, the default argon2id profile ``HASHER``, a few
accounts), the submission, relay and IMAP listeners with one TLS certificate, and an Admit
that commits each message to a real ``QueueStore`` in the same SQLite file through the
node's group commit on one database thread, as a node does (``securemail.queue.commits``).
This process is the clients, on uvloop where it is installed, as the node is.

Measured per concurrency (parallel clients, a new connection per session):

- submission: connect, STARTTLS, AUTH PLAIN, one 4 KiB message, QUIT, against the
  reference of the same session on the relay listener without AUTH (STARTTLS too, the
  same Admit and queue), so only the login differs;
- IMAP: connect, STARTTLS, LOGIN, SELECT INBOX, LOGOUT, against the reference of
  connect, STARTTLS, CAPABILITY, LOGOUT on the same server;
- the bare argon2id verify rate of the default profile (OWASP's minimum, m=19 MiB, t=2,
  p=1) against OWASP's memory-heavy equivalent (m=46 MiB, t=1), one thread, same run.

The two sides of each ratio run in interleaved rounds (the order alternating), so drift on
a noisy machine touches both; a ratio is the median of the per-round ratios. The node's CPU
time per session (its user + system time over the batch) is read from /proc. Every batch
stops starting sessions after ``--batch-seconds``; the whole run stops after ``--budget``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import multiprocessing
import os
import resource
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosmtplib
from argon2 import PasswordHasher, Type
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from proc_cpu import cpu_seconds
from securemail.accounts.node import open_accounts
from securemail.accounts.passwords import HASHER
from securemail.deliver.maildir import mailbox_path
from securemail.imap import start_imap
from securemail.pki.authority import generate_key, issue_for_key, make_root_ca, private_key_pem
from securemail.queue import Direction, NewMessage, QueueStore
from securemail.queue.commits import GroupCommit
from securemail.queue.threads import DatabaseThreads
from securemail.receive import (
    Admit,
    ListenerSettings,
    Received,
    start_relay_listener,
    start_submission_listener,
)
from securemail.replies import Reply, ok
from smime_bench import make_message, markdown_table, plain_table, revision

KIB = 1024
DOMAIN = "securemail.provider.nz"
RECIPIENT = "hemi.walker@agency.govt.nz"
ACCOUNTS = 4
OWASP_MINIMUM = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID)
# OWASP's listed equivalent, spending memory instead of passes (the profile until 2026-11-29).
MEMORY_HEAVY = PasswordHasher(time_cost=1, memory_cost=47_104, parallelism=1, type=Type.ID)


class RunFailedError(Exception):
    """A session failed, or the run passed its time budget."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed, as ``securemail serve`` does."""
    try:
        import uvloop  # noqa: PLC0415 (optional at run time)
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=event_loop()) as runner:
        return runner.run(main)


# --------------------------------------------------------------------------- the node


@dataclass(frozen=True)
class Ports:
    submission: int
    relay: int
    imap: int
    ca_pem: bytes
    passwords: dict[str, str]


def tls_context(folder: Path) -> tuple[ssl.SSLContext, bytes]:
    """A server context for "localhost" (P-256) under a fresh CA; the CA in PEM."""
    now = datetime.now(UTC)
    ca = make_root_ca("SecureMail Login Benchmark", now=now, key_type="p256")
    key = generate_key("p256")
    certificate = issue_for_key(
        ca, "localhost", key.public_key(), now=now, domains=["localhost"], usage="signing",
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
    )  # fmt: skip
    (folder / "tls.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(private_key_pem(key, None))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(folder / "tls.pem", folder / "tls.key")
    return context, ca.certificate_pem()


def queue_admit(store: QueueStore) -> Admit:
    """The node's way in: the group commit on one database thread (SQLite), 250 after it."""
    commits = GroupCommit(store, DatabaseThreads("sqlite"), lambda: datetime.now(UTC))

    async def admit(received: Received) -> Reply:
        new = NewMessage(
            direction=Direction.OUTBOUND, org_id="bench", mail_from=received.mail_from,
            recipients=received.recipients, body=received.body,
            client=f"{received.listener} {received.client_address}", auth=received.auth_user,
        )  # fmt: skip
        return ok(f"Queued as {await commits.enqueue(new)}")

    return admit


async def serve(conn: Connection, folder: Path) -> None:
    """Open accounts and queue, start the three listeners, report, wait for the word to stop."""
    url = f"sqlite:///{folder / 'node.sqlite3'}"
    tls, ca_pem = tls_context(folder)
    passwords = {f"person{n}@{DOMAIN}": secrets.token_urlsafe(18) for n in range(ACCOUNTS)}
    with (
        open_accounts(
            url, log_path=folder / "accounts.log", passphrase=b"login bench", domains=[DOMAIN]
        ) as accounts,
        QueueStore.open(url) as store,
    ):
        for address, password in passwords.items():
            accounts.service.add(address, password)
        admit = queue_admit(store)
        settings = ListenerSettings("127.0.0.1", 0, "mail.securemail.provider.nz", tls=tls)
        submission = await start_submission_listener(
            settings, authenticator=accounts.authenticator,
            check_recipient=lambda _sender, _recipient: None, admit=admit,
        )  # fmt: skip
        relay = await start_relay_listener(
            settings, networks=[ipaddress.ip_network("127.0.0.0/8")],
            check_recipient=lambda _sender, _recipient: None,
            sender_allowed=lambda _sender: True, admit=admit,
        )  # fmt: skip
        mail = folder / "mail"  # the delivery root, as a node's configuration names it
        mail.mkdir()
        imap = await start_imap(
            accounts.authenticator, lambda primary: mailbox_path(mail, primary), tls,
            listen=("127.0.0.1", 0), seal=accounts.mailbox_seal,
        )  # fmt: skip
        assert imap.port is not None
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
        conn.send(Ports(submission.port, relay.port, imap.port, ca_pem, passwords))
        await stop.wait()
        for listener in (submission, relay, imap):
            await listener.close()


def node_main(conn: Connection, folder: str) -> None:
    """The child process: serve until the parent writes to ``conn``."""
    run_async(serve(conn, Path(folder)))


# --------------------------------------------------------------------------- the clients

Session = Callable[[int], Awaitable[None]]  # one session; the argument picks the account


def client_tls(ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.check_hostname = False  # the certificate names localhost; we dial 127.0.0.1
    return context


def message_for(sender: str) -> bytes:
    """A 4 KiB text message from ``sender`` (submission checks the From: is the account's)."""
    body = make_message(4 * KIB).split(b"\r\n\r\n", 1)[1]
    head = (
        f"From: <{sender}>\r\nTo: <{RECIPIENT}>\r\nSubject: Benchmark\r\n"
        "Date: Sun, 29 Nov 2026 12:00:00 +1300\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return head.encode() + body


def smtp_session(port: int, ports: Ports, *, login: bool) -> Session:
    users = list(ports.passwords)
    messages = [message_for(user) for user in users]
    context = client_tls(ports.ca_pem)

    async def session(n: int) -> None:
        user = users[n % len(users)]
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, tls_context=context, start_tls=True, timeout=60
        )
        await client.connect()
        await client.ehlo()  # after STARTTLS; sendmail would send it anyway
        if login:
            await client.auth_plain(user, ports.passwords[user])
        await client.sendmail(user, [RECIPIENT], messages[n % len(users)])
        await client.quit()

    return session


class ImapClient:
    """Just enough IMAP4rev1 for the benchmark: tagged commands, STARTTLS, OK or fail."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.tag = reader, writer, 0

    async def command(self, text: str) -> None:
        self.tag += 1
        tag, verb = f"b{self.tag}", text.split(maxsplit=1)[0]
        self.writer.write(f"{tag} {text}\r\n".encode())
        while not (line := await self.reader.readline()).startswith(tag.encode()):
            if not line:
                raise RunFailedError(
                    f"IMAP server closed the connection after {text.split(maxsplit=1)[0]}"
                )
        if not line.startswith(f"{tag} OK".encode()):
            raise RunFailedError(f"IMAP {verb} refused: {line!r}")


def imap_session(ports: Ports, *, login: bool) -> Session:
    users = list(ports.passwords)
    context = client_tls(ports.ca_pem)

    async def session(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", ports.imap)
        try:
            client = ImapClient(reader, writer)
            if not (await reader.readline()).startswith(b"* OK"):
                raise RunFailedError("no IMAP greeting")
            await client.command("STARTTLS")
            await writer.start_tls(context)
            if login:
                user = users[n % len(users)]
                await client.command(f'LOGIN "{user}" "{ports.passwords[user]}"')
                await client.command("SELECT INBOX")
            else:
                await client.command("CAPABILITY")
            await client.command("LOGOUT")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    return session


@dataclass(frozen=True)
class Batch:
    sessions: int
    seconds: float
    cpu: float  # the node's CPU seconds over the batch
    durations: tuple[float, ...]


async def run_batch(
    session: Session, count: int, concurrency: int, limit: float, node_pid: int
) -> Batch:
    """``count`` sessions over ``concurrency`` clients; no new session after ``limit`` s."""
    started = time.perf_counter()
    cpu = cpu_seconds(node_pid)
    deadline = started + limit
    durations: list[float] = []
    next_session = iter(range(count))

    async def client() -> None:
        for n in next_session:
            if time.perf_counter() > deadline:
                return
            begin = time.perf_counter()
            try:
                await session(n)
            except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as error:
                raise RunFailedError(f"session {n} failed: {error!r}") from error
            durations.append(time.perf_counter() - begin)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return Batch(len(durations), seconds, cpu_seconds(node_pid) - cpu, tuple(durations))


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Row:
    what: str
    concurrency: int
    batches: tuple[Batch, ...]
    reference: Row | None = None

    @property
    def sessions(self) -> int:
        return sum(b.sessions for b in self.batches)

    @property
    def rate(self) -> float:
        return self.sessions / sum(b.seconds for b in self.batches)

    @property
    def cpu_ms(self) -> float:
        return sum(b.cpu for b in self.batches) / self.sessions * 1e3

    def percentile(self, p: int) -> float:
        durations = [d for b in self.batches for d in b.durations]
        return statistics.quantiles(durations, n=100, method="inclusive")[p - 1] * 1e3

    def ratio(self) -> tuple[float, float, float] | None:
        """Median, lowest and highest per-round ratio of this rate to the reference's."""
        if self.reference is None:
            return None
        rounds = [
            (b.sessions / b.seconds) / (r.sessions / r.seconds)
            for b, r in zip(self.batches, self.reference.batches, strict=True)
        ]
        return statistics.median(rounds), min(rounds), max(rounds)


@dataclass(frozen=True)
class Pair:
    what: str
    login: Session
    reference_what: str
    reference: Session


async def measure_pair(
    pair: Pair, concurrency: int, args: argparse.Namespace, node_pid: int
) -> list[Row]:
    """Warm up both, then interleaved rounds of the reference and the login sessions."""
    per_round = max(concurrency, args.sessions // args.rounds)
    for session in (pair.reference, pair.login):
        await run_batch(session, 2 * concurrency, concurrency, args.batch_seconds, node_pid)
    login: list[Batch] = []
    reference: list[Batch] = []
    for r in range(args.rounds):
        order = [(pair.reference, reference), (pair.login, login)]
        for session, batches in order if r % 2 == 0 else reversed(order):
            check_budget(args)
            batch = await run_batch(session, per_round, concurrency, args.batch_seconds, node_pid)
            batches.append(batch)
    base = Row(pair.reference_what, concurrency, tuple(reference))
    return [base, Row(pair.what, concurrency, tuple(login), base)]


def check_budget(args: argparse.Namespace) -> None:
    if time.monotonic() > args.deadline:
        raise RunFailedError(f"the run passed its {args.budget:.0f} s budget; lower --sessions")


async def measure_sessions(args: argparse.Namespace, ports: Ports, node_pid: int) -> list[Row]:
    pairs = [
        Pair(
            "submission: STARTTLS + AUTH PLAIN + 4 KiB + QUIT",
            smtp_session(ports.submission, ports, login=True),
            "relay, reference: STARTTLS + 4 KiB + QUIT",
            smtp_session(ports.relay, ports, login=False),
        ),
        Pair(
            "IMAP: STARTTLS + LOGIN + SELECT INBOX + LOGOUT",
            imap_session(ports, login=True),
            "IMAP, reference: STARTTLS + CAPABILITY + LOGOUT",
            imap_session(ports, login=False),
        ),
    ]
    rows = []
    for pair in pairs:
        for concurrency in args.concurrency:
            log(f"{pair.what}, concurrency {concurrency} ...")
            rows += await measure_pair(pair, concurrency, args, node_pid)
    return rows


@dataclass(frozen=True)
class HashRate:
    name: str
    seconds: tuple[float, ...]  # per round: wall seconds per verify (1 / verifies per second)
    user: float  # CPU seconds per verify over all rounds, in user mode
    system: float  # ... in the kernel (mapping and zeroing the fresh memory)
    faults: float  # minor page faults per verify: each is a fresh 4 KiB page


def verify_for(hasher: PasswordHasher, hashed: str, password: str, seconds: float) -> int:
    """Verify ``password`` against ``hashed`` for ``seconds`` (at least 3 times); how often."""
    count, started = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - started < seconds:
        hasher.verify(hashed, password)
        count += 1
    return count


# MEMORY_HEAVY's 46 MiB is above glibc's largest mmap threshold (32 MiB), so every verify
# maps fresh memory and the kernel zeroes it; these settings keep it on the heap.
HEAP_KEPT = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=1073741824"
_VERIFY_IN_CHILD = """
import json, resource, sys, time
from argon2 import PasswordHasher, Type
HASHER = PasswordHasher(time_cost=1, memory_cost=47_104, parallelism=1, type=Type.ID)
password = sys.argv[2]
hashed = HASHER.hash(password)
before, started, count = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
while count < 3 or time.perf_counter() - started < float(sys.argv[1]):
    HASHER.verify(hashed, password)
    count += 1
wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps([count, wall, after.ru_utime - before.ru_utime,
                  after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt]))
"""


Usage = tuple[float, float, float, float, float]  # wall, user, system s, faults, verifies


def verify_heap_kept(password: str, seconds: float) -> Usage:
    """MEMORY_HEAVY in a child process started with ``GLIBC_TUNABLES`` (read only at
    start-up) set to HEAP_KEPT."""
    env = {**os.environ, "GLIBC_TUNABLES": HEAP_KEPT}
    command = [sys.executable, "-c", _VERIFY_IN_CHILD, str(seconds), password]
    done = subprocess.run(command, env=env, capture_output=True, check=True, timeout=120)
    count, wall, user, system, faults = json.loads(done.stdout)
    return wall, user, system, faults, count


def in_process(verify: Callable[[], int]) -> Callable[[], Usage]:
    """``verify`` (returning how many verifies it made) with its wall and rusage figures."""

    def run() -> Usage:
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        count = verify()
        wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
        user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        return wall, user, system, after.ru_minflt - before.ru_minflt, count

    return run


def verify_rates(rounds: int, seconds: float, threads: int) -> list[HashRate]:
    """Seconds per argon2id verify of OWASP's minimum and of its memory-heavy equivalent on
    one thread, of the default profile on ``threads`` threads at once (throughput) and of
    the memory-heavy one with the heap kept, interleaved."""
    password = secrets.token_urlsafe(18)
    owasp, default, heavy = (h.hash(password) for h in (OWASP_MINIMUM, HASHER, MEMORY_HEAVY))
    pool = ThreadPoolExecutor(threads, thread_name_prefix="argon2")

    def in_parallel() -> int:
        runs = [pool.submit(verify_for, HASHER, default, password, seconds) for _ in range(threads)]
        return sum(run.result() for run in runs)

    runs: dict[str, Callable[[], Usage]] = {
        "default = OWASP minimum (m=19 MiB, t=2, p=1), 1 thread": in_process(
            lambda: verify_for(OWASP_MINIMUM, owasp, password, seconds)
        ),
        "OWASP equivalent (m=46 MiB, t=1, p=1), 1 thread": in_process(
            lambda: verify_for(MEMORY_HEAVY, heavy, password, seconds)
        ),
        f"default, {threads} threads at once (total)": in_process(in_parallel),
        "m=46 MiB, t=1, 1 thread, heap kept (GLIBC_TUNABLES)": (
            lambda: verify_heap_kept(password, seconds)
        ),
    }
    usages: dict[str, list[Usage]] = {name: [] for name in runs}
    with pool:
        for r in range(rounds):
            for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
                usages[name].append(runs[name]())
    rates = []
    for name, measured in usages.items():
        count = sum(u[4] for u in measured)
        user, system, faults = (sum(u[i] for u in measured) / count for i in (1, 2, 3))
        rates.append(HashRate(name, tuple(u[0] / u[4] for u in measured), user, system, faults))
    return rates


# --------------------------------------------------------------------------- the report

HEADERS = ["path", "clients", "sessions", "sessions/s", "p50 ms", "p99 ms", "node CPU ms", "ratio"]


def ratio_cell(ratio: tuple[float, float, float] | None) -> str:
    if ratio is None:
        return "1.00x (reference)"
    median, low, high = ratio
    return f"{median:.2f}x ({low:.2f}-{high:.2f})"


def session_cells(rows: Sequence[Row]) -> list[list[str]]:
    return [
        [
            row.what,
            str(row.concurrency),
            str(row.sessions),
            f"{row.rate:.1f}",
            f"{row.percentile(50):.0f}",
            f"{row.percentile(99):.0f}",
            f"{row.cpu_ms:.1f}",
            ratio_cell(row.ratio()),
        ]
        for row in rows
    ]


def hash_cells(rates: Sequence[HashRate]) -> list[list[str]]:
    owasp = rates[0]
    cells = []
    for rate in rates:
        per_round = [o / s for s, o in zip(rate.seconds, owasp.seconds, strict=True)]
        median = statistics.median(rate.seconds)
        ratio = f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"
        cpu = f"{rate.user * 1e3:.0f} + {rate.system * 1e3:.0f}"
        cells.append(
            [
                rate.name,
                f"{1 / median:.1f}",
                f"{median * 1e3:.1f}",
                cpu,
                f"{rate.faults:.0f}",
                ratio,
            ]
        )
    return cells


def report(args: argparse.Namespace, rows: Sequence[Row], rates: Sequence[HashRate]) -> None:
    cores = os.cpu_count() or 1
    info = [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; securemail {revision()}",
        f"machine: nproc {cores}, load average {args.load:.2f} at the start; the node process, "
        "the clients and the hashing share it",
        f"node: SQLite (accounts and queue in one file), {ACCOUNTS} accounts, uvloop "
        f"{'yes' if event_loop() else 'no'}, default thread pool (to_thread) "
        f"{min(32, cores + 4)} threads; {args.rounds} interleaved rounds per row, a new "
        f"connection per session; run time {time.monotonic() - args.started:.0f} s",
    ]
    sessions = session_cells(rows)
    hashing = hash_cells(rates)
    hash_headers = ["argon2id verify", "verifies/s", "ms each", "CPU ms user + sys"]
    hash_headers += ["page faults", "rate x OWASP"]
    table = markdown_table if args.markdown else plain_table
    bullet = "- " if args.markdown else ""
    print("\n".join(bullet + line for line in info) + "\n")
    print(table(HEADERS, sessions))
    print()
    print(table(hash_headers, hashing))


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200, help="sessions per row (200)")
    parser.add_argument("--concurrency", default="1,8", help="parallel clients (1,8)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per row (4)")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="cap per round (60)")
    parser.add_argument("--budget", type=float, default=600.0, help="cap on the run (600 s)")
    parser.add_argument("--quick", action="store_true", help="40 sessions, 2 rounds: a smoke run")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    try:
        args.concurrency = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.error("--concurrency takes numbers separated by commas, e.g. 1,8")
    if args.quick:
        args.sessions, args.rounds = 40, 2
    if args.sessions < 1 or args.rounds < 1 or min(args.concurrency) < 1:
        parser.error("--sessions, --rounds and --concurrency must be at least 1")
    args.started, args.load = time.monotonic(), os.getloadavg()[0]
    args.deadline = args.started + args.budget
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    log("argon2id verify rates ...")
    rounds, seconds = (3, 0.5) if args.quick else (5, 2.0)
    rates = verify_rates(rounds, seconds, os.cpu_count() or 1)
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="login-bench-") as folder:
        ours, theirs = spawn.Pipe()
        node = spawn.Process(target=node_main, args=(theirs, folder), daemon=True)
        node.start()
        try:
            started = time.monotonic()
            while not ours.poll(0.1):
                if not node.is_alive() or time.monotonic() - started > 60:
                    log("failed: the node did not start (see its traceback above)")
                    return 1
            ports: Ports = ours.recv()
            assert node.pid is not None
            rows = run_async(measure_sessions(args, ports, node.pid))
        except RunFailedError as error:
            log(f"failed: {error}")
            return 1
        finally:
            with contextlib.suppress(OSError):
                ours.send("stop")
            node.join(30)
            if node.is_alive():
                node.terminate()
                node.join()
    report(args, rows, rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
