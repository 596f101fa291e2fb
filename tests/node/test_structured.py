"""E-invoices between two members' business applications, on real nodes on loopback.

The agency's application posts an A-NZ invoice to its gateway's JSON API; Harbour Builders'
gateway (on the GSP node) validates it again and posts it, with its verification, to
Harbour's webhook (a real HTTP server here); Harbour's application answers with an Invoice
Response over SMTP, which the agency's gateway matches to the invoice in ``securemail track``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from securemail.access.model import Scope
from securemail.access.store import WebStore
from securemail.access.tokens import WebAccess
from securemail.accounts.events import ACCOUNTS_LOG, AccountEvents
from securemail.accounts.node import open_accounts
from securemail.cli.main import cli
from securemail.node.run import open_node
from securemail.queue import QueueStore
from securemail.structured import mlr, responses
from securemail.structured.documents import MLR, RESPONSE_NS, identify, parse
from securemail.structured.message import Outgoing, compose, find
from tests.node.conftest import WAIT, Federation, mailbox_files, running
from tests.node.test_crash import Process
from tests.structured.conftest import sample, schema_folder
from tests.support import webhook

AROHA = "aroha.ngata@agency.govt.nz"
HARBOUR_APP = "accounts@harbourbuilders.co.nz"
SECRET = b"harbour webhook secret for the tests"


@pytest.fixture
def ubl() -> Path:
    return schema_folder()


def _configure(
    federation: Federation, ubl: Path, webhook_port: int, *, sender_schemas: bool = True
) -> None:
    """Harbour (the last organisation on the GSP node) takes documents at its webhook; the
    GSP gateway checks the UBL 2.1 schema, and the agency's too unless ``sender_schemas``
    is False."""
    secret = federation.root / "harbour-webhook.secret"
    secret.write_bytes(SECRET)
    gsp = federation.nodes["gsp"].config
    gsp.write_text(
        gsp.read_text() + f'\n[organisation.structured]\nkind = "webhook"\n'
        f'url = "http://127.0.0.1:{webhook_port}/invoices"\nsecret_file = "{secret}"\n'
        f'\n[structured]\nubl_schemas = "{ubl}"\n'
    )
    if sender_schemas:
        agency = federation.nodes["agency"].config
        agency.write_text(agency.read_text() + f'\n[structured]\nubl_schemas = "{ubl}"\n')


def _application_token(federation: Federation) -> str:
    """An application-scoped API token for the agency's invoicing (Aroha's account)."""
    config = federation.config("agency")
    passphrase = federation.root.joinpath("passphrase.txt").read_bytes().strip()
    with open_accounts(
        config.database,
        log_path=config.data_dir / ACCOUNTS_LOG,
        passphrase=passphrase,
        domains=config.domains,
    ) as accounts:
        events = AccountEvents(config.data_dir / ACCOUNTS_LOG)
        access = WebAccess(WebStore(accounts.engine), events, lambda: datetime.now(UTC))
        return access.token_add(AROHA, "invoicing", Scope.APPLICATION)[1]


@asynccontextmanager
async def _api(federation: Federation) -> AsyncIterator[httpx.AsyncClient]:
    token = _application_token(federation)
    tls = ssl.create_default_context(cafile=str(federation.config("agency").anchor))
    origin = f"https://127.0.0.1:{federation.nodes['agency'].web_port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(verify=tls, base_url=origin, headers=headers) as client:
        yield client


async def _post(client: httpx.AsyncClient, document: bytes) -> httpx.Response:
    body = {"to": HARBOUR_APP, "document": document.decode()}
    return await client.post("/api/v1/structured", json=body, timeout=WAIT)


async def _answer(federation: Federation, envelope: dict[str, Any], code: str) -> None:
    """Harbour's application answers the invoice through its gateway's relay listener."""
    invoice = parse(sample("invoice-nz-valid.xml"))
    supplier, buyer = responses.parties(invoice)
    answer = responses.Answer("HB-IR-1", envelope["document_id"], code)
    document = responses.write(
        answer, sender=buyer, receiver=supplier, issued=datetime.now(UTC).date()
    )
    kind = identify(parse(document))
    outgoing = Outgoing(
        document,
        kind,
        "HB-IR-1",
        HARBOUR_APP,
        AROHA,
        "Invoice response",
        False,
        envelope["message_id"],
    )
    message, _ = compose(outgoing, datetime.now(UTC))
    port = federation.nodes["gsp"].relay_port
    await aiosmtplib.send(
        message,
        sender=HARBOUR_APP,
        recipients=[AROHA],
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
    )


async def _tracked(federation: Federation, message_id: str, wanted: str) -> str:
    """The track CLI's output once ``wanted`` is on the message's timeline (or time is up)."""
    deadline = time.monotonic() + WAIT
    config = str(federation.nodes["agency"].config)
    while True:
        result = CliRunner().invoke(cli, ["track", "--config", config, message_id])
        if wanted in result.output or time.monotonic() > deadline:
            return result.output
        await asyncio.sleep(0.3)


def test_an_invoice_reaches_the_buyer_application_once_verified_and_its_answer_comes_back(
    federation: Federation, ubl: Path
) -> None:
    """API → Harbour's webhook once, verified and signed; the Invoice Response comes back to
    the agency's application (its drop folder) and is in track."""
    drop = federation.root / "agency-drop"

    async def scenario() -> tuple[webhook.Inbox, str, str]:
        inbox = webhook.Inbox(SECRET)
        runner, port = await webhook.start(inbox)
        try:
            _configure(federation, ubl, port)
            agency = federation.nodes["agency"].config
            agency.write_text(
                agency.read_text() + f'[organisation.structured]\nkind = "drop"\npath = "{drop}"\n'
            )
            async with running(federation, "agency", "gsp"), _api(federation) as api:
                posted = await _post(api, sample("invoice-nz-valid.xml"))
                assert posted.status_code == 202, posted.text
                message_id = posted.json()["message_id"]
                await asyncio.wait_for(inbox.arrived.wait(), WAIT)
                (envelope,) = inbox.documents.values()
                await _answer(federation, envelope, "AP")
                tracked = await _tracked(federation, message_id, "business answer")
                api_track = (await api.get(f"/api/v1/structured/{message_id}")).json()
                assert "business answer" in [s["what"] for s in api_track[0]["timeline"]]
                await asyncio.sleep(3)  # a second copy would come within the retry schedule
                return inbox, message_id, tracked
        finally:
            await runner.cleanup()

    inbox, message_id, tracked = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert len(inbox.requests) == 1 and len(inbox.documents) == 1
    (envelope,) = inbox.documents.values()
    assert envelope["verified"] is True and envelope["signer_org"] == "agency"
    assert AROHA in envelope["from"] and envelope["message_id"] == message_id
    assert envelope["validation"]["valid"] is True
    assert "ubl-2.1-schema" in envelope["validation"]["checks"]
    assert inbox.document(envelope["delivery_id"]) == sample("invoice-nz-valid.xml")
    assert "business answer" in tracked and "KOW-2026-0412 accepted (AP)" in tracked, tracked
    (answer,) = [json.loads(p.read_text()) for p in drop.glob("*.json")]
    assert answer["in_reply_to"] == message_id and answer["signer_org"] == "harbour"
    assert answer["document_type"].startswith(f"{RESPONSE_NS}::ApplicationResponse##")


def test_a_broken_invoice_is_refused_at_the_api_with_its_rule_ids_and_nothing_is_queued(
    federation: Federation, ubl: Path
) -> None:
    """422 naming the failed rules; the agency's queue stays empty."""

    async def scenario() -> httpx.Response:
        _configure(federation, ubl, 9)
        async with running(federation, "agency"), _api(federation) as api:
            return await _post(api, sample("invoice-nz-wrong-totals.xml"))

    refused = asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"] == "structured-invalid"
    assert body["rules"] == ["PEPPOL-EN16931-R120", "BR-CO-10", "BR-CO-15"]
    store = QueueStore.open(federation.config("agency").database)
    try:
        assert store.list() == []
    finally:
        store.close()


def test_a_broken_invoice_over_smtp_is_refused_before_it_is_queued(
    federation: Federation, ubl: Path
) -> None:
    """A program's SMTP submission of an invalid document gets 554 5.6.0 with the rule ids."""

    async def scenario() -> str:
        _configure(federation, ubl, 9)
        async with running(federation, "agency"):
            document = sample("invoice-nz-missing-buyer.xml")
            kind = identify(parse(sample("invoice-nz-valid.xml")))
            outgoing = Outgoing(document, kind, "KOW-2026-0412", AROHA, HARBOUR_APP, "Invoice")
            message, _ = compose(outgoing, datetime.now(UTC))
            port = federation.nodes["agency"].relay_port
            try:
                await aiosmtplib.send(
                    message,
                    sender=AROHA,
                    recipients=[HARBOUR_APP],
                    hostname="127.0.0.1",
                    port=port,
                    start_tls=False,
                )
            except aiosmtplib.SMTPResponseException as error:
                return f"{error.code} {error.message}"
            return "accepted"

    reply = asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))
    assert reply.startswith("554 5.6.0"), reply
    assert "BR-07, PEPPOL-EN16931-R010, PEPPOL-COMMON-R040" in reply
    store = QueueStore.open(federation.config("agency").database)
    try:
        assert store.list() == []
    finally:
        store.close()


def test_a_webhook_down_for_a_while_loses_nothing_and_gets_the_invoice_once(
    federation: Federation, ubl: Path
) -> None:
    """503s for 6 s (the demo's retry schedule is 2 s, 5 s, 10 s): kept, then delivered once."""

    async def scenario() -> webhook.Inbox:
        inbox = webhook.Inbox(SECRET)
        runner, port = await webhook.start(inbox)
        try:
            _configure(federation, ubl, port)
            async with running(federation, "agency", "gsp"), _api(federation) as api:
                inbox.down_until = time.monotonic() + 6
                posted = await _post(api, sample("invoice-nz-valid.xml"))
                assert posted.status_code == 202, posted.text
                await asyncio.wait_for(inbox.arrived.wait(), 2 * WAIT)
                await asyncio.sleep(3)
                return inbox
        finally:
            await runner.cleanup()

    inbox = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert inbox.refused >= 1, "the webhook was down at the first attempt"
    assert len(inbox.documents) == 1
    assert len(inbox.requests) == inbox.refused + 1  # one 2xx, then nothing more


def test_a_kill_9_of_the_receiving_node_mid_request_delivers_the_invoice_once(
    federation: Federation, ubl: Path
) -> None:
    """SIGKILL of Harbour's gateway while its webhook request is in flight: after the
    restart the same delivery (same id) is posted again, and the application keeps one."""
    gsp = Process(federation.nodes["gsp"].config)

    def kill_on_first(_: str) -> None:
        if gsp.child is not None and len(inbox.requests) == 1:
            os.kill(gsp.child.pid, signal.SIGKILL)

    inbox = webhook.Inbox(SECRET, on_request=kill_on_first)

    async def scenario() -> None:
        runner, port = await webhook.start(inbox)
        try:
            _configure(federation, ubl, port)
            await asyncio.to_thread(gsp.start)
            async with running(federation, "agency"), _api(federation) as api:
                posted = await _post(api, sample("invoice-nz-valid.xml"))
                assert posted.status_code == 202, posted.text
                deadline = time.monotonic() + 2 * WAIT
                while gsp.child is not None and gsp.child.poll() is None:
                    assert time.monotonic() < deadline, "the webhook was never called"
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(gsp.start)
                while len(inbox.requests) < 2:
                    assert time.monotonic() < deadline + WAIT, "not delivered after the restart"
                    await asyncio.sleep(0.2)
                await asyncio.sleep(3)
        finally:
            gsp.stop()
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(scenario(), 5 * WAIT))
    assert len(set(inbox.requests)) == 1, inbox.requests  # one delivery id throughout
    assert len(inbox.documents) == 1
    assert len(inbox.requests) == 2


def test_a_document_the_receiver_refuses_fails_back_to_the_sender_with_the_rule_ids(
    federation: Federation, ubl: Path
) -> None:
    """A sender without the schemas lets a schema-invalid invoice go; Harbour's gateway,
    which checks the schema, refuses it on receipt (554 5.6.0 structured-invalid): the
    application never sees it, the sender gets the signed failure notice naming the rule
    and a signed PEPPOL Message Level Response (RE, the rule as a line response) from
    Harbour, which the agency's gateway matches to the invoice in its track."""
    mailbox = federation.nodes["agency"].mailbox(AROHA)

    async def scenario() -> tuple[webhook.Inbox, str, str]:
        inbox = webhook.Inbox(SECRET)
        runner, port = await webhook.start(inbox)
        try:
            _configure(federation, ubl, port, sender_schemas=False)
            async with running(federation, "agency", "gsp"), _api(federation) as api:
                posted = await _post(api, sample("invoice-nz-schema-order.xml"))
                assert posted.status_code == 202, posted.text
                assert "ubl-2.1-schema" not in posted.json()["validation"]["checks"]
                message_id = posted.json()["message_id"]
                tracked = await _tracked(federation, message_id, "no receipt")
                deadline = time.monotonic() + WAIT
                while not any(b"UBL-SCHEMA" in m for m in mailbox_files(mailbox)):
                    assert time.monotonic() < deadline, "no failure notice naming the rule"
                    await asyncio.sleep(0.3)
                answered = await _tracked(federation, message_id, "business answer")
                return inbox, tracked + answered, message_id
        finally:
            await runner.cleanup()

    inbox, tracked, message_id = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert not inbox.requests
    assert "no receipt in time" in tracked, tracked
    assert "business answer" in tracked and "(MLR RE): UBL-SCHEMA" in tracked, tracked
    arrived = mailbox_files(mailbox)
    (notice,) = [m for m in arrived if b"structured-invalid" in m]
    assert b"UBL-SCHEMA" in notice and b"Document refused" in notice
    (answer,) = [m for m in arrived if f"In-Reply-To: {message_id}".encode() in m]
    assert b"X-SecureMail-Status: verified" in answer and b"signer=harbour" in answer
    found = find(answer)
    assert found is not None and found.declared_type is not None
    assert found.declared_type.endswith(f"##{MLR}::2.1")
    refusal = mlr.read(parse(found.document))
    assert (refusal.code, refusal.message_id) == ("RE", message_id)
    assert "UBL-SCHEMA" in refusal.rules


def test_an_invoice_sent_with_the_cli_waits_in_the_agencys_pull_queue_until_taken(
    federation: Federation, ubl: Path
) -> None:
    """Harbour's application sends with ``securemail structured send`` (SMTP to its gateway);
    the agency pulls (``kind = "pull"``): the invoice waits, verified, until taken."""
    agency = federation.nodes["agency"].config
    agency.write_text(agency.read_text() + '\n[organisation.structured]\nkind = "pull"\n')
    document = federation.root / "invoice.xml"
    document.write_bytes(sample("invoice-nz-valid.xml"))
    gsp = str(federation.nodes["gsp"].config)

    async def scenario() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        async with running(federation, "agency", "gsp"), _api(federation) as api:
            sent = await asyncio.to_thread(
                CliRunner().invoke,
                cli,
                [
                    "structured",
                    "send",
                    str(document),
                    "--to",
                    AROHA,
                    "--from",
                    HARBOUR_APP,
                    "--config",
                    gsp,
                ],
            )
            assert sent.exit_code == 0, sent.output
            deadline = time.monotonic() + WAIT
            while not (waiting := (await api.get("/api/v1/structured/inbox")).json()["documents"]):
                assert time.monotonic() < deadline, "nothing arrived in the pull queue"
                await asyncio.sleep(0.3)
            taken = await api.post(f"/api/v1/structured/inbox/{waiting[0]['key']}/taken")
            assert taken.status_code == 200
            after = (await api.get("/api/v1/structured/inbox")).json()["documents"]
            return sent.output.strip(), waiting, after

    message_id, waiting, after = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    (envelope,) = waiting
    assert envelope["message_id"] == message_id and envelope["signer_org"] == "harbour"
    assert envelope["verified"] is True and HARBOUR_APP in envelope["from"]
    assert after == []


def test_a_pulling_node_opens_one_pull_queue_and_closes_it_when_it_stops(
    federation: Federation,
) -> None:
    """open_node() gives every pulling organisation one shared pull queue; Node.close()
    closes its connections (none left checked in to the pool)."""
    agency = federation.nodes["agency"].config
    agency.write_text(agency.read_text() + '\n[organisation.structured]\nkind = "pull"\n')

    async def scenario() -> tuple[int, int]:
        node = await open_node(federation.config("agency"), fetch=False)
        assert node.inbox is not None
        now = datetime.now(UTC)
        await node.queue.db(node.inbox.put, "agency", {"delivery_id": "x:a@b", "d": 1}, now)
        engine = node.inbox._engine
        before = _idle(engine)
        await node.close()
        return before, _idle(engine)

    before, after = asyncio.run(asyncio.wait_for(scenario(), WAIT))
    assert (before, after) == (1, 0)


def _idle(engine: Engine) -> int:
    """Connections checked in to ``engine``'s pool (a file database's pool is a queue)."""
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedin()
