"""The gateway on PostgreSQL: the same end-to-end exchange with both queues in the database."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from securemail.demo.exchange import Script, header, submit, wait_for
from securemail.queue import Direction, QueueStore, State
from tests.node.conftest import WAIT, Federation, open_people_accounts, running
from tests.queue.conftest import _admin, pg_url

SCRIPT = Script(
    "agency to citizen on PostgreSQL",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "[IN-CONFIDENCE] Stored in PostgreSQL",
)


@pytest.fixture
def on_postgres(federation: Federation) -> Iterator[Federation]:
    """The federation with agency and provider queues in fresh PostgreSQL schemas."""
    schemas = {name: f"q_{secrets.token_hex(6)}" for name in ("agency", "provider")}
    with _admin() as admin:
        for name, schema in schemas.items():
            admin.execute(f"CREATE SCHEMA {schema}")
            config = federation.nodes[name].config
            text = config.read_text().replace(
                "[node]\n", f'[node]\ndatabase = "{pg_url(schema)}"\n', 1
            )
            config.write_text(text)
        open_people_accounts(federation, "provider")
        try:
            yield federation
        finally:
            for schema in schemas.values():
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_exchange_with_postgresql_queues(on_postgres: Federation) -> None:
    """Mail is queued, relayed and delivered verified with both nodes on PostgreSQL."""
    federation = on_postgres

    async def scenario() -> bytes | None:
        async with running(federation, "agency", "provider"):
            reply = await submit(federation.nodes["agency"], SCRIPT, SCRIPT.message(1, NOW))
            assert reply.startswith("250"), reply
            mailbox = federation.nodes["provider"].mailbox(SCRIPT.to[0])
            return await wait_for(mailbox, Script.message_id(1, "agency.govt.nz"), WAIT)

    delivered = asyncio.run(scenario())
    assert delivered is not None
    assert "signer=agency" in header(delivered, "X-SecureMail-Status")
    for name, direction in (("agency", Direction.OUTBOUND), ("provider", Direction.INBOUND)):
        url = federation.config(name).database
        assert url.startswith("postgresql")
        with QueueStore.open(url) as store:
            [entry] = store.list(direction=direction)
            assert entry.state is State.DELIVERED


NOW = datetime.now(UTC)


def _drop_tables_under(schema: str) -> None:
    """Empty ``schema`` while the node runs. DROP locks table after table, so it can deadlock
    with a worker's transaction that reads two of them; PostgreSQL then cancels one side,
    and if that was the DROP it is simply tried again."""
    for _ in range(5):
        try:
            with _admin() as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
                admin.execute(f"CREATE SCHEMA {schema}")  # empty: the fixture drops it again
            return
        except psycopg.errors.DeadlockDetected:
            continue
    raise AssertionError(f"could not drop {schema}: five deadlocks in a row")


def test_database_gone_means_451_not_250(on_postgres: Federation) -> None:
    """With the queue's tables gone, the relay listener answers 451: nothing is half-accepted."""
    federation = on_postgres
    schema = federation.config("agency").database.rpartition("%3D")[2]

    async def scenario() -> str:
        async with running(federation, "agency"):
            _drop_tables_under(schema)
            return await submit(federation.nodes["agency"], SCRIPT, SCRIPT.message(2, NOW))

    reply = asyncio.run(scenario())
    assert "451" in reply or "4.3.0" in reply, reply
