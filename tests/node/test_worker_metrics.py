"""``/metrics`` of a node with ``[node] workers = 2`` counts what its worker processes did
(protect, relay, deliver happen there, not in the process serving ``/metrics``), and keeps
the counts of a worker killed meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from securemail.demo.exchange import Script
from tests.node.conftest import Federation
from tests.node.test_crash import DEADLINE, SCRIPT, Process, _delivered, _send
from tests.node.test_workers import wait_for_workers, with_workers

MESSAGES = 6


def _delivered_count(federation: Federation) -> float:
    """The agency's ``securemail_messages_total`` for outbound deliveries, from /metrics."""
    agency = federation.nodes["agency"]
    tls = ssl.create_default_context(cafile=str(federation.config("agency").anchor))
    answer = httpx.get(f"https://127.0.0.1:{agency.web_port}/metrics", verify=tls, timeout=10)
    assert answer.status_code == 200, answer.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "securemail_messages_total"
        and sample.labels == {"direction": "outbound", "outcome": "delivered"}
    )


def test_metrics_add_up_the_worker_processes(federation: Federation) -> None:
    """Six messages relayed by worker processes, one of them killed after the third: the
    main process's /metrics counts six deliveries (before, it counted none)."""
    for name in ("agency", "provider"):
        with_workers(federation.nodes[name].config, 2)
    agency = Process(federation.nodes["agency"].config)
    provider = Process(federation.nodes["provider"].config)
    relay_port = federation.nodes["agency"].relay_port
    mailbox = federation.nodes["provider"].mailbox(SCRIPT.to[0])
    wanted = {Script.message_id(n, "agency.govt.nz") for n in range(1, MESSAGES + 1)}
    try:
        agency.start()
        provider.start()
        workers = wait_for_workers(agency, 2)
        for n in range(1, MESSAGES + 1):
            assert asyncio.run(_send(relay_port, n))
            if n == MESSAGES // 2:
                while len(_delivered(mailbox)) < n:
                    time.sleep(0.2)
                os.kill(min(workers), signal.SIGKILL)
                wait_for_workers(agency, 2, besides={min(workers)})
        deadline = time.monotonic() + DEADLINE
        while not wanted <= set(_delivered(mailbox)) and time.monotonic() < deadline:
            time.sleep(0.3)
        counted = 0.0
        while counted < MESSAGES and time.monotonic() < deadline:
            counted = _delivered_count(federation)
            time.sleep(0.3)
    finally:
        agency.stop()
        provider.stop()
    assert wanted <= set(_delivered(mailbox))
    assert counted == MESSAGES
