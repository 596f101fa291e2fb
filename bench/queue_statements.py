"""The database work one message causes each node's queue: transactions, commits, statements.

Run from the repository root::

    python bench/queue_statements.py               # SQLite and PostgreSQL
    python bench/queue_statements.py --no-postgres

One message goes through the store calls the nodes make for it, one at a time (no group
commit batching others in), and each call's transactions, commits and statements by kind
are counted with SQLAlchemy's engine events (bench/sql_counter.py; the prepared
statements of securemail.storage.prepared fire the same ``before_cursor_execute``):

- gateway A (sender): the client's message enqueued, claimed with its body, its attempt
  recorded (relayed, a receipt requested); the receipt coming back enqueued, claimed, its
  signature looked up, the original entry read (for the sender's notice), the receipt
  accepted, the receipt entry recorded delivered;
- gateway B (receiver): the message enqueued, claimed, its delivery key reserved, its
  attempt recorded delivered (the key, the receipt queued with it); the receipt claimed
  and recorded relayed.

What the gateway benchmark's ``--count-sql`` shows per message under load is less (the
group commit and claims share transactions) plus the workers' idle polls.

With ``--repeat N`` it also runs each node's path N more times on the same store and
prints the CPU milliseconds one message costs it: this process (SQLite runs in it) plus,
on PostgreSQL, the server process of the store's one connection (``/proc``), as
bench/enqueue_cost.py measures.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

import sql_counter
from enqueue_cost import server_pid
from proc_cpu import cpu_seconds
from securemail.queue import Attempt, Direction, NewMessage, NewSignature, QueueStore
from securemail.replies import ok

POSTGRES = "postgresql://root@127.0.0.1:5432/test"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SENDER, RECIPIENT = "aroha@agency.govt.nz", "hemi@provider.nz"
KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")  # WITH: PostgreSQL's records append


def new(direction: Direction, *, receipt: bool = False) -> NewMessage:
    """A 4 KiB message, or a receipt (a message of kind "notice" back to the sender)."""
    return NewMessage(
        direction=direction,
        org_id="agency",
        mail_from="" if receipt else SENDER,
        recipients=(SENDER if receipt else RECIPIENT,),
        body=b"Subject: x\r\n\r\n" + b"x" * 4096,
        client="relay 127.0.0.1",
        message_id=f"<statements-{secrets.token_hex(4)}@agency.govt.nz>",
        kind="notice" if receipt else "mail",
    )


def step(rows: list[tuple[str, Counter[str]]], name: str, call: Callable[[], Any]) -> Any:
    before = sql_counter.counted()
    result = call()
    rows.append((name, sql_counter.counted() - before))
    return result


def sender(store: QueueStore) -> list[tuple[str, Counter[str]]]:
    rows: list[tuple[str, Counter[str]]] = []
    entry_id = step(rows, "enqueue", lambda: store.enqueue(new(Direction.OUTBOUND), NOW))
    [entry] = step(rows, "claim", lambda: store.claim(Direction.OUTBOUND, NOW, bodies=True))
    cid = secrets.token_hex(16)
    sent = NewSignature(cid, "provider", (RECIPIENT,), b"0", "{}", timedelta(hours=1))
    attempt = Attempt(entry.id, {RECIPIENT: ok()}, (("protected", "signed"),), signatures=(sent,))
    step(rows, "record (relayed)", lambda: store.record_many([attempt], NOW))
    back = new(Direction.INBOUND, receipt=True)
    receipt_id = step(rows, "enqueue (receipt)", lambda: store.enqueue(back, NOW))
    step(rows, "claim (receipt)", lambda: store.claim(Direction.INBOUND, NOW, bodies=True))
    step(rows, "signature", lambda: store.signature(cid))
    step(rows, "get (notice)", lambda: store.get(entry_id))
    step(rows, "accept_receipt", lambda: store.accept_receipt(cid, RECIPIENT, b"r", "{}", NOW))
    done = Attempt(receipt_id, {SENDER: ok()}, (("verified", "receipt"),))
    step(rows, "record (receipt)", lambda: store.record_many([done], NOW))
    return rows


def receiver(store: QueueStore) -> list[tuple[str, Counter[str]]]:
    rows: list[tuple[str, Counter[str]]] = []
    step(rows, "enqueue", lambda: store.enqueue(new(Direction.INBOUND), NOW))
    [entry] = step(rows, "claim", lambda: store.claim(Direction.INBOUND, NOW, bodies=True))
    key = f"key-{secrets.token_hex(8)}"
    step(rows, "reserve", lambda: store.reserve_many([([key], entry.id)], NOW))
    receipt = new(Direction.OUTBOUND, receipt=True)
    events = (("verified", "signer"), ("sender-vouched", "From: x"))
    attempt = Attempt(entry.id, {RECIPIENT: ok()}, events, (key,), enqueue=(receipt,))
    step(rows, "record (delivered)", lambda: store.record_many([attempt], NOW))
    [out] = step(rows, "claim (receipt)", lambda: store.claim(Direction.OUTBOUND, NOW, bodies=True))
    relayed = Attempt(out.id, {SENDER: ok()}, (("protected", "signed"),))
    step(rows, "record (receipt)", lambda: store.record_many([relayed], NOW))
    return rows


@contextmanager
def database(engine: str) -> Iterator[str]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="queue-statements-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'queue.db'}"
        return
    schema = f"qs_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def table(title: str, rows: Sequence[tuple[str, Counter[str]]]) -> list[str]:
    lines = [f"| {title} | transactions | commits | statements | " + " | ".join(KINDS) + " |"]
    lines.append("|---|" + "---:|" * (3 + len(KINDS)))
    total: Counter[str] = Counter()
    for name, work in [*rows, ("**per message**", total)]:
        if name != "**per message**":
            total.update(work)
        cells = [work["transactions"], work["commits"], work["statements"]]
        cells += [work[f"statements {kind}"] for kind in KINDS]
        lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    return lines


def cpu_ms(store: QueueStore, path: Callable[[QueueStore], Any], repeat: int) -> str:
    """CPU ms a message of ``path`` run ``repeat`` times: this process, the server's."""
    engine = store._engine  # its one connection: the server process measured
    pid = server_pid(engine)
    server0 = cpu_seconds(pid) if pid else 0.0
    client0 = time.process_time()
    for _ in range(repeat):
        path(store)
    client = (time.process_time() - client0) / repeat * 1e3
    server = ((cpu_seconds(pid) - server0) if pid else 0.0) / repeat * 1e3
    return f"CPU ms a message: {client + server:.2f} ({client:.2f} here, {server:.2f} server)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--repeat", type=int, default=0, help="also measure CPU over N runs")
    args = parser.parse_args(argv)
    sql_counter.install()
    for engine in ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]:
        for node, path in (("gateway A", sender), ("gateway B", receiver)):
            with database(engine) as url, QueueStore.open(url) as store:
                rows = path(store)
                cpu = cpu_ms(store, path, args.repeat) if args.repeat else ""
            print("\n".join(table(f"{node}, {engine}", rows)) + "\n")
            if cpu:
                print(f"{node}, {engine}: {cpu}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
