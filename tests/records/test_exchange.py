"""After a real exchange between two nodes, each node's log verifies, and breaks when edited."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Executable, delete, select, update

from securemail.cli.main import cli
from securemail.demo.exchange import Script, submit, wait_for
from securemail.records.schema import checkpoints, log
from securemail.storage.engine import connect, transaction
from tests.node.conftest import WAIT, Federation, founded, open_people_accounts, running
from tests.node.conftest import federation as node_federation
from tests.queue.conftest import _admin, pg_url

__all__ = ["founded", "node_federation"]

NOW = datetime.now(UTC)
SCRIPT = Script(
    "agency to citizen, recorded",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "[IN-CONFIDENCE] Your records",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def exchanged(request: pytest.FixtureRequest, node_federation: Federation) -> Iterator[Federation]:
    """The federation after agency sent the citizen one message (both nodes stopped)."""
    federation, schemas = node_federation, {}
    if request.param == "postgresql":
        schemas = {name: f"q_{secrets.token_hex(6)}" for name in ("agency", "provider")}
        with _admin() as admin:
            for name, schema in schemas.items():
                admin.execute(f"CREATE SCHEMA {schema}")
                config = federation.nodes[name].config
                line = f'[node]\ndatabase = "{pg_url(schema)}"\n'
                config.write_text(config.read_text().replace("[node]\n", line, 1))
        open_people_accounts(federation, "provider")

    async def scenario() -> bytes | None:
        async with running(federation, "agency", "provider"):
            reply = await submit(federation.nodes["agency"], SCRIPT, SCRIPT.message(1, NOW))
            assert reply.startswith("250"), reply
            mailbox = federation.nodes["provider"].mailbox(SCRIPT.to[0])
            return await wait_for(mailbox, Script.message_id(1, "agency.govt.nz"), WAIT)

    try:
        assert asyncio.run(scenario()) is not None
        yield federation
    finally:
        if schemas:
            with _admin() as admin:
                for schema in schemas.values():
                    admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _verify(federation: Federation, node: str, *flags: str) -> tuple[int, str]:
    config = str(federation.nodes[node].config)
    done = CliRunner().invoke(cli, ["records", "verify", "--config", config, *flags])
    return done.exit_code, done.output


def _tamper(federation: Federation, node: str, statement: Executable) -> None:
    engine = connect(federation.config(node).database)
    with transaction(engine, "tamper", write=True) as conn:
        conn.execute(statement)
    engine.dispose()


def _records(federation: Federation, node: str) -> list[dict[str, Any]]:
    engine = connect(federation.config(node).database)
    with transaction(engine, "read", write=False) as conn:
        texts = list(conn.execute(select(log.c.record).order_by(log.c.seq)).scalars())
    engine.dispose()
    return [json.loads(t) for t in texts]


def test_log_verifies_after_the_exchange_and_names_each_break(exchanged: Federation) -> None:
    """Both logs verify, with the message's events and a shutdown checkpoint; then one
    changed byte, a deleted record, two swapped records and a changed checkpoint each fail
    verify naming what broke."""
    for node in ("agency", "provider"):
        code, output = _verify(exchanged, node)
        assert code == 0 and "the log holds" in output, output
        assert "0 signed checkpoints" not in output, output
    events = [r["event"] for r in _records(exchanged, "agency")]
    assert {"queue.accepted", "queue.protected", "queue.delivered"} <= set(events), events
    assert "account.created" in events  # accounts.log, brought in before the checkpoint
    delivered = [r for r in _records(exchanged, "provider") if r["event"] == "queue.delivered"]
    assert delivered and delivered[0]["subjects"][-1] == SCRIPT.to[0]
    assert all("Your records" not in json.dumps(r) for r in _records(exchanged, "provider"))

    code, output = _verify(exchanged, "agency", "--json")
    assert code == 0 and json.loads(output)["ok"] is True, output

    _tamper(exchanged, "agency", update(log).where(log.c.seq == 2).values(event="queue.xccepted"))
    code, output = _verify(exchanged, "agency")
    assert code == 1 and "record 2" in output, output
    code, output = _verify(exchanged, "agency", "--json")
    report = json.loads(output[: output.rindex("}") + 1])
    assert code == 1 and report["ok"] is False and report["bad_record"] == 2, output

    _tamper(exchanged, "provider", delete(log).where(log.c.seq == 2))
    code, output = _verify(exchanged, "provider")
    assert code == 1 and "record 2 is missing" in output, output


def test_swapped_records_and_a_changed_checkpoint_fail(exchanged: Federation) -> None:
    """Two swapped records, then one changed checkpoint byte, fail verify naming them."""
    engine = connect(exchanged.config("agency").database)
    with transaction(engine, "tamper", write=True) as conn:
        rows = {r.seq: dict(r._mapping) for r in conn.execute(select(log).where(log.c.seq < 3))}
        for seq, other in ((1, 2), (2, 1)):
            values = {k: v for k, v in rows[other].items() if k != "seq"}
            conn.execute(update(log).where(log.c.seq == seq).values(values))
    engine.dispose()
    code, output = _verify(exchanged, "agency")
    assert code == 1 and "record 1" in output, output

    engine = connect(exchanged.config("provider").database)
    with transaction(engine, "tamper", write=True) as conn:
        point = conn.execute(select(checkpoints).limit(1)).one()
        signed = bytearray(point.signed)
        signed[len(signed) // 2] ^= 0x01
        changed = update(checkpoints).where(checkpoints.c.id == point.id)
        conn.execute(changed.values(signed=bytes(signed)))
    engine.dispose()
    code, output = _verify(exchanged, "provider")
    assert code == 1 and f"checkpoint {point.id}" in output, output


def test_export_for_the_citizen_after_the_exchange(exchanged: Federation, tmp_path: Path) -> None:
    """`records export --subject` on the provider holds every record about the citizen and
    none about another mailbox; outside the node's storage it needs the flag, recorded."""
    config = str(exchanged.nodes["provider"].config)
    citizen = SCRIPT.to[0]
    done = CliRunner().invoke(cli, ["records", "export", "--config", config, "--subject", citizen])
    assert done.exit_code == 0, done.output
    folder = Path(done.output.split(" to ", 1)[1].split(" (", 1)[0])
    exported = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines()]
    about = [r for r in _records(exchanged, "provider") if citizen in r["subjects"]]
    assert [r["seq"] for r in exported] == [r["seq"] for r in about] and exported
    assert {"queue.accepted", "queue.delivered"} <= {r["event"] for r in exported}
    mentioned = {a for r in exported for a in r["subjects"]}
    unrelated = {a for r in _records(exchanged, "provider") for a in r["subjects"]} - mentioned
    bundle = (folder / "records.jsonl").read_text() + (folder / "summary.html").read_text()
    assert unrelated and not any(a in bundle for a in unrelated), unrelated

    outside = ["--into", str(tmp_path / "elsewhere")]
    refused = CliRunner().invoke(
        cli, ["records", "export", "--config", config, "--subject", citizen, *outside]
    )
    assert refused.exit_code == 1 and "records-outside-storage" in refused.output
    allowed = ["--outside-node-storage", *outside]
    done = CliRunner().invoke(
        cli, ["records", "export", "--config", config, "--subject", citizen, *allowed]
    )
    assert done.exit_code == 0, done.output
    last = _records(exchanged, "provider")[-1]
    assert last["event"] == "records.exported" and last["details"]["outside_node_storage"] == "yes"
    code, output = _verify(exchanged, "provider")
    assert code == 0, output
