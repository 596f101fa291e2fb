"""The queue counters of a node (events, outcomes, delivery time, TLS failures), added up
over all of its processes.

Theory of operation. Each process counts the queue events its own transactions commit
(:meth:`QueueStore.observe`), so with ``[node] workers`` above one the events of the worker
processes (protected, relayed, delivered, …) happen where no ``/metrics`` is served. Then
the node uses prometheus-client's multiprocess mode: :func:`share_counters` in the main
process, before any counter exists and before the workers start, empties
``<data_dir>/metrics`` and names it in ``PROMETHEUS_MULTIPROC_DIR``, which the workers
inherit; every process's counters are then memory-mapped files there, and the main
process's ``/metrics`` adds up the files of every process, those of workers that died
and were restarted included (a counter never goes back). Gauges are not counted this way:
the node's gauges are read from the database at scrape time, true whichever process did
the work. With one process nothing is shared and nothing is written to disk.

(prometheus-client's multiprocess functions carry no type annotations: hence the three
``no-untyped-call`` exceptions below.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from securemail.config.node import NodeConfig
from securemail.logbook import QueueLine

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"
FINAL_EVENTS = frozenset({"delivered", "bounced", "expired", "quarantined"})
TLS_REASONS = frozenset({"tls-failed", "tls-pin-mismatch", "tls-unavailable"})
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


def share_counters(config: NodeConfig) -> Path | None:
    """In the main process: the folder every process of the node counts into, emptied
    (counters start at zero with the node, as in one process), or None with one process."""
    if config.workers == 1:
        os.environ.pop(ENVIRONMENT, None)
        values.ValueClass = values.MutexValue
        return None
    path = config.data_dir / "metrics"
    path.mkdir(mode=0o700, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    os.environ[ENVIRONMENT] = str(path)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return path


def counting_worker() -> bool:
    """In a worker process: whether its main process shares its counters (and, if so, count
    into the shared folder from here on)."""
    if not os.environ.get(ENVIRONMENT):
        return False
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return True


def add_up(registry: CollectorRegistry, shared: Path) -> None:
    """Make ``registry`` expose the counters of every process counting into ``shared``."""
    MultiProcessCollector(registry, path=str(shared))  # type: ignore[no-untyped-call]


class QueueCounters:
    """The counters of committed queue events in one process (one per queue log line)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "securemail_queue_events",
            "Queue events by direction, event and reason code (one per log line).",
            ("direction", "event", "reason"),
            registry=registry,
        )
        self.outcomes = Counter(
            "securemail_messages",
            "Recipients reaching a final outcome, by direction and outcome.",
            ("direction", "outcome"),
            registry=registry,
        )
        self.latency = Histogram(
            "securemail_delivery_seconds",
            "Seconds from accept to a recipient's final outcome.",
            ("direction", "outcome"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.tls_failures = Counter(
            "securemail_tls_failures",
            "Relay attempts deferred because TLS or the directory pin failed, by reason.",
            ("reason",),
            registry=registry,
        )

    def observe(self, lines: Sequence[QueueLine]) -> None:
        """Count committed queue events (called by the store after each commit)."""
        for line in lines:
            self.events.labels(line.direction, line.event, line.reason).inc()
            if line.event in FINAL_EVENTS:
                self.outcomes.labels(line.direction, line.event).inc()
                if line.created_at is not None:
                    seconds = max((line.time - line.created_at).total_seconds(), 0.0)
                    self.latency.labels(line.direction, line.event).observe(seconds)
            if line.reason in TLS_REASONS:
                self.tls_failures.labels(line.reason).inc()
