"""Several processes appending at once: one linear chain, no record lost, none forked."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from securemail.records.chain import NewRecord, RecordClass, record
from securemail.records.schema import log
from securemail.records.verify import CheckpointTrust, verify
from securemail.storage.engine import connect, transaction

WRITERS = 4
EACH = 25


def _write(url: str, writer: int, start: float) -> None:
    """One writer process: wait for the common start, then append EACH records."""
    engine = connect(url)
    time.sleep(max(0.0, start - time.time()))
    for n in range(EACH):
        now = datetime.now(UTC)
        details = {"w": f"{writer}.{n}"}
        record(engine, NewRecord(now, RecordClass.SECURITY, "test.write", details=details))
        time.sleep(0.002)  # a node does other work between events (SQLite's lock is unfair)
    engine.dispose()


def test_concurrent_writers_make_one_linear_chain(engine: Engine, url: str) -> None:
    """Four processes appending 40 records each at once leave 160 records that verify."""
    context = multiprocessing.get_context("spawn")
    start = time.time() + 4.0  # after every process imported
    workers = [context.Process(target=_write, args=(url, w, start)) for w in range(WRITERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with transaction(engine, "verify", write=False) as conn:
        verdict = verify(conn, CheckpointTrust())
        seqs = list(conn.execute(select(log.c.seq).order_by(log.c.seq)).scalars())
        texts = conn.execute(select(log.c.record).order_by(log.c.seq)).scalars()
        order = [text.split('"w":"')[1].split(".")[0] for text in texts]
    assert verdict.ok, verdict
    assert seqs == list(range(1, WRITERS * EACH + 1))
    assert set(order) == {str(w) for w in range(WRITERS)}
    switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert switches > WRITERS  # they wrote at the same time, not one after another
