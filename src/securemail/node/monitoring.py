"""Health, readiness and Prometheus metrics for a running node, on its web server.

``/healthz`` answers 200 while the process serves HTTP at all. ``/readyz`` answers 200
only when the database answers a query, the organisations' keys are loaded, the directory
is current (before its ``next_update``) and every listener is bound, else 503 naming the
checks that failed. ``/metrics`` is the Prometheus text format (prometheus-client).

Theory of operation. What the database knows is read at scrape time, so it is true
whichever process did the work: queue depth by state, direction and reason, receipts by
state, login failures and locks. What happens (events, delays, TLS failures) is counted as
the queue's own transactions commit (:meth:`QueueStore.observe`, the same lines the
operations log writes), so a counter and a log line never disagree. Certificate and
directory expiry are Unix timestamps, for ``… - time() < 14 * 86400`` alerts.

Security: no token is needed for ``/healthz`` and ``/readyz``, which say only "ok" or the
names of failing checks. ``/metrics`` reveals traffic volumes, so it answers only clients
in ``[web] metrics_from`` (loopback by default) and 403 to others.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from securemail.accounts.throttle import LoginThrottle, ThrottlePolicy
from securemail.config.node import IPNetwork
from securemail.directory.refresh import DirectoryRefresher
from securemail.keys.org import OrgKeys
from securemail.node.context import Node
from securemail.node.counters import QueueCounters, add_up
from securemail.node.listeners import Listeners
from securemail.queue import QueueStore
from securemail.receive import Listener
from securemail.smime import SmimeError
from securemail.smime.keys import load_certificate

DbRunner = Callable[..., Awaitable[Any]]


@dataclass
class Monitor:
    """What the monitoring endpoints look at; ``listeners`` is filled once they are bound."""

    store: QueueStore
    db: DbRunner
    refresher: DirectoryRefresher
    orgs: Mapping[str, OrgKeys]  # the node's key ring: organisations whose keys are open
    expected_orgs: int
    tls_certificate: x509.Certificate | None
    throttle: LoginThrottle | None
    clock: Callable[[], datetime]
    metrics_from: tuple[IPNetwork, ...]
    listeners: list[Listener] = field(default_factory=list)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    shared: Path | None = None  # the folder every process counts into (workers > 1)

    def __post_init__(self) -> None:
        # With worker processes the counters are added up from every process's files
        # (securemail.node.counters); this process's own go there too, not in the registry.
        counted = self.registry if self.shared is None else CollectorRegistry()
        self.counters = QueueCounters(counted)
        if self.shared is not None:
            add_up(self.registry, self.shared)
        self.registry.register(_StateCollector(self))
        self.store.observe(self.counters.observe)

    async def readiness(self) -> dict[str, str]:
        """Each check's problem, or "ok"."""
        checks = {"database": "ok", "keys": "ok", "directory": "ok", "listeners": "ok"}
        try:
            await self.db(self.store.counts)
        except Exception as error:  # any failure to answer is "not ready"
            checks["database"] = type(error).__name__
        if len(self.orgs) != self.expected_orgs:
            checks["keys"] = "not loaded"
        directory = self.refresher.current
        if directory is None:
            checks["directory"] = "none"
        elif directory.next_update <= self.clock():
            checks["directory"] = "stale"
        if not self.listeners or not all(listener.serving for listener in self.listeners):
            checks["listeners"] = "not bound"
        return checks

    def may_scrape(self, host: str | None) -> bool:
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(address in network for network in self.metrics_from)


def open_monitor(node: Node, listeners: Listeners, shared: Path | None = None) -> Monitor:
    """The monitor of a running ``node`` whose ``listeners`` are bound; ``shared``: the
    folder its worker processes count into (securemail.node.counters.share_counters)."""
    config = node.config
    try:
        tls: x509.Certificate | None = load_certificate(config.tls_certificate.read_bytes())
    except (OSError, ValueError, SmimeError):
        tls = None  # the listeners loaded it; a file replaced since is not a reason to stop
    throttle = None
    if node.accounts is not None:
        throttle = LoginThrottle(node.accounts.engine, ThrottlePolicy())
    return Monitor(
        store=node.store,
        db=node.queue.db,
        refresher=node.refresher,
        orgs=node.orgs,
        expected_orgs=len(config.organisations),
        tls_certificate=tls,
        throttle=throttle,
        clock=node.clock,
        metrics_from=config.web.metrics_from if config.web else (),
        listeners=listeners.all(),
        shared=shared,
    )


def monitoring_router(monitor: Monitor) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics`` for ``monitor``."""
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks = await monitor.readiness()
        ready = all(value == "ok" for value in checks.values())
        body = "".join(f"{name}: {value}\n" for name, value in checks.items())
        return PlainTextResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not monitor.may_scrape(request.client.host if request.client else None):
            return PlainTextResponse("forbidden\n", status_code=403)
        body = await monitor.db(generate_latest, monitor.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


class _StateCollector(Collector):
    """What the database and the loaded keys say at scrape time."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterable[Metric]:
        yield from self._queue()
        yield from self._expiry()
        yield from self._logins()

    def _queue(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "securemail_queue_entries",
            "Queue entries by state, direction and reason code.",
            labels=("state", "direction", "reason"),
        )
        for state, direction, reason, count in self.monitor.store.depth():
            depth.add_metric((state.value, direction.value, reason), count)
        yield depth
        receipts = GaugeMetricFamily(
            "securemail_receipts",
            "Recipients of sent mail by receipt state (awaiting, receipted, expired).",
            labels=("state",),
        )
        for receipt_state, count in self.monitor.store.receipt_counts().items():
            receipts.add_metric((receipt_state.value,), count)
        yield receipts

    def _expiry(self) -> Iterator[Metric]:
        monitor = self.monitor
        certs = GaugeMetricFamily(
            "securemail_certificate_expiry_timestamp_seconds",
            "When each certificate the node uses expires (Unix time).",
            labels=("org", "purpose", "serial"),
        )
        for org_id, keys in monitor.orgs.items():
            _add_cert(certs, org_id, "signing", keys.signer.certificate)
            for identity in keys.identities:
                _add_cert(certs, org_id, "encryption", identity.certificate)
        if monitor.tls_certificate is not None:
            _add_cert(certs, "", "tls", monitor.tls_certificate)
        yield certs
        directory = monitor.refresher.current
        if directory is not None:
            yield GaugeMetricFamily(
                "securemail_directory_next_update_timestamp_seconds",
                "When the current directory must be replaced by a newer one (Unix time).",
                value=directory.next_update.timestamp(),
            )
            yield GaugeMetricFamily(
                "securemail_directory_serial", "The current directory's serial.", directory.serial
            )

    def _logins(self) -> Iterator[Metric]:
        if self.monitor.throttle is None:
            return
        now = self.monitor.clock()
        failures = GaugeMetricFamily(
            "securemail_login_failures",
            "Failed logins counted in the throttle's window, by scope (account, source).",
            labels=("scope",),
        )
        for scope, count in self.monitor.throttle.failures(now).items():
            failures.add_metric((scope,), count)
        yield failures
        locks = GaugeMetricFamily(
            "securemail_login_lockouts", "Accounts and sources locked out now.", labels=("scope",)
        )
        by_scope: dict[str, int] = {}
        for lock in self.monitor.throttle.locks(now):
            by_scope[lock.key.scope] = by_scope.get(lock.key.scope, 0) + 1
        for scope, count in by_scope.items():
            locks.add_metric((scope,), count)
        yield locks


def _add_cert(family: GaugeMetricFamily, org: str, purpose: str, cert: x509.Certificate) -> None:
    family.add_metric((org, purpose, format(cert.serial_number, "x")), _expiry(cert))


def _expiry(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()
