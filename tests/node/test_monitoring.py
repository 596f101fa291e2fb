"""Operators follow a message in the log and watch the node: a real exchange between two
nodes, the operations log read back with ``securemail log grep``, ``/metrics`` parsed with
prometheus-client's own parser, ``/readyz`` losing its database."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from securemail import logbook
from securemail.cli.main import cli
from securemail.demo.exchange import Script, submit, wait_for
from securemail.queue import Direction, QueueStore
from tests.node.conftest import WAIT, Federation, running
from tests.node.test_postgres import on_postgres  # noqa: F401 (a fixture)
from tests.queue.conftest import _admin

NOW = datetime.now(UTC)
TO_CITIZEN = Script(
    "agency to citizen, receipt asked",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "[IN-CONFIDENCE] Your benefit review",
    receipt=True,
)
MESSAGE_ID = Script.message_id(1, "agency.govt.nz")


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The operations log, as ``securemail serve`` configures it, written to a file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    path = tmp_path / "securemail.log"
    with path.open("w", encoding="utf-8") as stream:
        logbook.configure("text", "INFO", stream=stream)
        try:
            yield path
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


def _tls(federation: Federation) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(federation.config("agency").anchor))


async def _exchange(federation: Federation) -> None:
    """Agency to citizen with a receipt asked; returns once the agency has the receipt."""
    reply = await submit(federation.nodes["agency"], TO_CITIZEN, TO_CITIZEN.message(1, NOW))
    assert reply.startswith("250"), reply
    mailbox = federation.nodes["provider"].mailbox(TO_CITIZEN.to[0])
    assert await wait_for(mailbox, MESSAGE_ID, WAIT) is not None
    store = QueueStore.open(federation.config("agency").database)
    try:
        for _ in range(int(WAIT * 10)):
            if any(r.receipted_at for r in store.receipt_records(MESSAGE_ID)):
                return
            await asyncio.sleep(0.1)
    finally:
        store.close()
    raise AssertionError("no receipt came back")


def _history(federation: Federation, node: str, direction: Direction) -> tuple[str, list[str]]:
    """The queue id of the test message on ``node`` and its history's event names."""
    store = QueueStore.open(federation.config(node).database)
    try:
        (entry,) = [e for e in store.list(direction=direction) if e.message_id == MESSAGE_ID]
        return entry.id, [event.event for event in store.events(entry.id)]
    finally:
        store.close()


def test_every_event_of_one_message_is_in_the_log_by_its_queue_id(
    federation: Federation, log_file: Path
) -> None:
    """Each event of the sending and the receiving node's queue history has its log line,
    and ``securemail log grep QUEUE-ID`` follows the message from one node to the other and
    to the receipt it caused."""

    async def scenario() -> None:
        async with running(federation, "agency", "provider"):
            await _exchange(federation)

    asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    sent_id, sent_events = _history(federation, "agency", Direction.OUTBOUND)
    got_id, got_events = _history(federation, "provider", Direction.INBOUND)
    lines = log_file.read_text().splitlines()
    for queue_id, history in ((sent_id, sent_events), (got_id, got_events)):
        logged = [f["event"] for f in map(logbook.parse, lines) if f.get("queue_id") == queue_id]
        assert logged == history
    assert {"accepted", "protected", "delivered", "relayed", "receipted"} <= set(sent_events)
    assert {"accepted", "verified", "delivered"} <= set(got_events)
    result = CliRunner().invoke(cli, ["log", "grep", sent_id, str(log_file)])
    assert result.exit_code == 0, result.output
    found = [logbook.parse(line) for line in result.output.splitlines()]
    assert {f["queue_id"] for f in found} >= {sent_id, got_id}
    ours = [f for f in found if f["queue_id"] in (sent_id, got_id)]
    assert all(f["message_id"] == MESSAGE_ID for f in ours)
    caused = {f["queue_id"] for f in found} - {sent_id, got_id}  # the receipt, both ways
    assert caused and all(f.get("message_id") != MESSAGE_ID for f in found if f not in ours)
    delivered = next(f for f in found if f["queue_id"] == sent_id and f["event"] == "delivered")
    assert delivered["from"] == TO_CITIZEN.mail_from and delivered["to"] == TO_CITIZEN.to[0]
    assert delivered["reply"].startswith("250 ") and re.fullmatch(
        r"127\.0\.0\.1:\d+", delivered["relay"]
    )
    assert float(delivered["delay"]) >= 0


def test_log_grep_says_when_nothing_names_the_id(tmp_path: Path) -> None:
    """An id no line names is one error line and exit 1, not silence."""
    empty = tmp_path / "empty.log"
    empty.write_text("")
    result = CliRunner().invoke(cli, ["log", "grep", "0123", str(empty)])
    assert result.exit_code == 1
    assert result.output.strip() == "error: not-found: no log line names 0123"


def test_metrics_during_an_exchange_show_the_messages_and_the_queue(
    federation: Federation,
) -> None:
    """/metrics, parsed by prometheus-client's parser after an exchange, counts the message
    relayed, its receipt and the queue by state; /healthz and /readyz answer without a token."""
    agency = federation.nodes["agency"]
    base = f"https://127.0.0.1:{agency.web_port}"

    async def scenario() -> tuple[str, int, int]:
        async with running(federation, "agency", "provider"):
            await _exchange(federation)
            async with httpx.AsyncClient(verify=_tls(federation), base_url=base) as client:
                metrics = await client.get("/metrics")
                health = await client.get("/healthz")
                ready = await client.get("/readyz")
        assert metrics.status_code == 200, metrics.text
        return metrics.text, health.status_code, ready.status_code

    text, health, ready = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    assert (health, ready) == (200, 200)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("securemail_messages_total", direction="outbound", outcome="delivered") >= 1
    assert (
        value("securemail_queue_entries", state="delivered", direction="outbound", reason="") >= 1
    )
    assert value("securemail_receipts", state="receipted") == 1
    assert (
        value("securemail_delivery_seconds_count", direction="outbound", outcome="delivered") >= 1
    )
    accepted = value(
        "securemail_queue_events_total", direction="outbound", event="accepted", reason=""
    )
    assert accepted >= 1
    expiry = [
        v for (name, _), v in samples.items() if name.startswith("securemail_certificate_exp")
    ]
    assert expiry and min(expiry) > NOW.timestamp()
    assert value("securemail_directory_next_update_timestamp_seconds") > NOW.timestamp()
    families = {family.name for family in text_string_to_metric_families(text)}
    for name in _contrib_metric_names():
        assert name.removesuffix("_total").removesuffix("_bucket") in families, name


CONTRIB = Path(__file__).parents[2] / "contrib"


def _contrib_metric_names() -> set[str]:
    """The metric names the example alert rules and the Grafana dashboard use (both files
    parsed: YAML rules with an expr each, dashboard panels with their targets)."""
    rules = yaml.safe_load((CONTRIB / "prometheus" / "securemail-alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((CONTRIB / "grafana" / "securemail-dashboard.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {name for expr in exprs for name in re.findall(r"securemail_[a-z_]+", expr)}
    assert len(exprs) >= 20 and len(names) >= 10
    return names


def test_readyz_turns_unready_when_the_database_is_gone(on_postgres: Federation) -> None:  # noqa: F811
    """With the node's PostgreSQL schema renamed away, /readyz is 503 naming the database;
    back in place, 200 again; /healthz stays 200 throughout."""
    federation = on_postgres
    url = federation.config("agency").database
    schema = re.search(r"search_path%3D(\w+)", url)
    assert schema is not None
    name = schema.group(1)
    base = f"https://127.0.0.1:{federation.nodes['agency'].web_port}"

    async def scenario() -> list[tuple[int, int, str]]:
        seen = []
        async with (
            running(federation, "agency"),
            httpx.AsyncClient(verify=_tls(federation), base_url=base) as client,
        ):
            for rename in (None, (name, f"{name}_gone"), (f"{name}_gone", name)):
                if rename is not None:
                    with _admin() as admin:
                        admin.execute(f"ALTER SCHEMA {rename[0]} RENAME TO {rename[1]}")
                ready, health = await client.get("/readyz"), await client.get("/healthz")
                seen.append((ready.status_code, health.status_code, ready.text))
        return seen

    (before, gone, back) = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    assert before[:2] == (200, 200) and back[:2] == (200, 200), (before, back)
    assert gone[:2] == (503, 200)
    assert "database: QueueError" in gone[2] and "keys: ok" in gone[2]
