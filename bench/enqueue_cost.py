"""CPU cost of one enqueue: the queue with its records log, without it, and a raw INSERT.

Run from the repository root::

    python bench/enqueue_cost.py                 # 500 enqueues of 4 KiB per row, both engines
    python bench/enqueue_cost.py --count 200 --no-postgres
    python bench/enqueue_cost.py --markdown      # a Markdown table, for docs/performance.md

Each row stores ``count`` messages of ``size`` bytes on one database, single-threaded:

- ``enqueue``: ``QueueStore.enqueue``, one message per transaction (the durable commit a
  listener waits for before its 250), with the records log appended in the transaction;
- ``enqueue_many 8``: eight messages per transaction (a group commit under load);
- the same two without the records log (the chain's ``append`` not called), for reference:
  the difference is what the records log costs;
- ``raw INSERT``: one row of the same size into a table of its own, one per transaction,
  through the same engine (the floor: a transaction, an INSERT and a commit).

CPU is this process's user + system time (``time.process_time``: the SQLite library runs in
it) plus, on PostgreSQL, the server process serving the benchmark's one connection (read
from ``/proc``: the server must run on this machine). Each figure is the median of
``rounds`` runs. PostgreSQL runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Column, Connection, Engine, Integer, LargeBinary, MetaData, String, Table

from proc_cpu import cpu_seconds
from securemail.queue import Direction, NewMessage, QueueStore, eventlog
from securemail.storage.engine import transaction

POSTGRES = "postgresql://root@127.0.0.1:5432/test"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
_RAW = Table(
    "bench_raw",
    MetaData(),
    Column("id", String(32), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class Row:
    """One measured path: median CPU (client, server) and wall time per message, in ms."""

    engine: str
    path: str
    client_ms: float
    server_ms: float
    wall_ms: float

    @property
    def total_ms(self) -> float:
        return self.client_ms + self.server_ms


def message(size: int, n: int) -> NewMessage:
    """An outbound message of ``size`` bytes to two recipients."""
    head = f"Message-ID: <bench-{n}@agency.govt.nz>\r\nSubject: cost\r\n\r\n".encode()
    return NewMessage(
        direction=Direction.OUTBOUND,
        org_id="agency",
        mail_from="clerk@agency.govt.nz",
        recipients=("aroha@ministry.govt.nz", "wiremu@ministry.govt.nz"),
        body=head + b"x" * max(0, size - len(head)),
        client="relay 127.0.0.1",
        message_id=f"<bench-{n}@agency.govt.nz>",
    )


@contextmanager
def _no_collecting(conn: Connection, messages: Table, wanted: bool) -> Iterator[list[Any]]:
    yield []  # what a transaction did before the records log, when no log line is wanted


@contextmanager
def without_records() -> Iterator[None]:
    """The queue's transactions as before the records log (reference rows only): nothing
    collected, described or appended (the benchmark wants no log lines)."""
    real = eventlog.collecting
    eventlog.collecting = _no_collecting
    try:
        yield
    finally:
        eventlog.collecting = real


def server_pid(engine: Engine) -> int | None:
    """The PostgreSQL server process of the engine's one pooled connection (None: SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def measure(engine: Engine, work: Callable[[], int]) -> tuple[float, float, float]:
    """CPU (client, server) and wall seconds per message of ``work`` (which says how many)."""
    pid = server_pid(engine)
    server0 = cpu_seconds(pid) if pid else 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    count = work()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    server = (cpu_seconds(pid) - server0) if pid else 0.0
    if pid is not None and server_pid(engine) != pid:
        raise RuntimeError("the benchmark's connection changed: server CPU not comparable")
    return cpu / count, server / count, wall / count


def rows_for(name: str, url: str, args: argparse.Namespace) -> list[Row]:
    """Every path on one database, each the median of ``args.rounds`` runs."""
    store = QueueStore.open(url)
    engine = store._engine  # its one connection: the server process measured
    _RAW.metadata.create_all(engine)
    serial = iter(range(10**9))

    def enqueue(group: int) -> Callable[[], int]:
        def run() -> int:
            for _ in range(args.count // group):
                news = [message(args.size, next(serial)) for _ in range(group)]
                store.enqueue_many(news, NOW)
            return int(args.count) // group * group

        return run

    def raw() -> int:
        body = b"x" * args.size
        for _ in range(args.count):
            with transaction(engine, "bench", write=True) as conn:
                conn.execute(_RAW.insert(), {"id": secrets.token_hex(8), "size": 1, "body": body})
        return int(args.count)

    paths: list[tuple[str, Callable[[], int], bool]] = [
        ("enqueue, with the records log", enqueue(1), True),
        ("enqueue, without it (reference)", enqueue(1), False),
        ("enqueue_many 8, with the records log", enqueue(8), True),
        ("enqueue_many 8, without it (reference)", enqueue(8), False),
        ("raw INSERT of the body (reference)", raw, True),
    ]
    try:
        enqueue(1)()  # warm-up: connections, statement caches
        found: dict[str, list[tuple[float, float, float]]] = {p: [] for p, _, _ in paths}
        for _ in range(args.rounds):  # interleaved, so drift on a busy machine hits all alike
            for path, work, records in paths:
                if records:
                    found[path].append(measure(engine, work))
                else:
                    with without_records():
                        found[path].append(measure(engine, work))
        return [_row(name, path, found[path]) for path, _, _ in paths]
    finally:
        store.close()


def _row(engine: str, path: str, runs: Sequence[tuple[float, float, float]]) -> Row:
    client, server, wall = (statistics.median(r[i] for r in runs) * 1000 for i in range(3))
    return Row(engine, path, client, server, wall)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    schema = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def report(rows: Sequence[Row], args: argparse.Namespace) -> None:
    print(f"{args.count} enqueues of {args.size} bytes per run, median of {args.rounds} runs")
    head = "| engine | path | CPU ms/msg client | server | total | wall ms/msg |"
    if args.markdown:
        print(head)
        print("|---|---|---:|---:|---:|---:|")
        for r in rows:
            cells = f"{r.client_ms:.2f} | {r.server_ms:.2f} | {r.total_ms:.2f} | {r.wall_ms:.2f}"
            print(f"| {r.engine} | {r.path} | {cells} |")
        return
    print(f"{'engine':<11}{'path':<42}{'client':>8}{'server':>8}{'total':>8}{'wall':>8}")
    for r in rows:
        numbers = f"{r.client_ms:8.2f}{r.server_ms:8.2f}{r.total_ms:8.2f}{r.wall_ms:8.2f}"
        print(f"{r.engine:<11}{r.path:<42}{numbers}")


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="messages per run")
    parser.add_argument("--size", type=int, default=4096, help="bytes per message")
    parser.add_argument("--rounds", type=int, default=5, help="runs per path (median)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    rows: list[Row] = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            rows += rows_for("SQLite", f"sqlite:///{Path(folder) / 'node.db'}", args)
    if not args.no_postgres:
        with pg_schema() as schema:
            url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
            rows += rows_for("PostgreSQL", url, args)
    report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
