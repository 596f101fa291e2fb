"""POST /api/v1/structured: the token's scope, validation before admission, the message
admitted, and a recipient outside SecureMail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from securemail.access.model import Principal, Scope
from securemail.accounts.node import Accounts
from securemail.config.node import load_config
from securemail.directory.model import Directory
from securemail.queue import QueueStore
from securemail.storage.engine import connect
from securemail.structured.inbox import PullInbox
from securemail.structured.message import TYPE_FIELD, find
from securemail.web import api, api_structured, auth, context
from tests.conftest import NOW, SEAL, Pki
from tests.structured.conftest import sample
from tests.web.conftest import run_off_loop
from tests.web.mail.conftest import Admitted, account, mail_config

COUNCIL = "invoices@ministry.govt.nz"  # a member in these tests' directory


def _client(
    tmp_path: Path,
    pki: Pki,
    directory: Directory,
    scope: Scope,
    admitted: Admitted,
    *,
    inbox: PullInbox | None = None,
) -> TestClient:
    config = mail_config(tmp_path, pki)
    if inbox is not None:
        with (tmp_path / "node.toml").open("a") as toml:
            toml.write('[organisation.structured]\nkind = "pull"\n')
        config = load_config(tmp_path / "node.toml")
    app = FastAPI()
    app.include_router(api_structured.router)
    app.add_exception_handler(api.ApiError, api.error_response)
    app.state.web = context.WebContext(
        config=config,
        accounts=cast("Accounts", None),  # the structured API never uses the accounts
        store=QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}"),
        db=run_off_loop,
        directory=lambda: directory,
        clock=lambda: NOW,
        maildir_for=lambda address: None,
        admit=admitted,
        seal=SEAL,
        inbox=inbox,
    )
    app.dependency_overrides[auth.api_principal] = lambda: Principal(account(), frozenset({scope}))
    return TestClient(app, client=("127.0.0.1", 50000))


@pytest.fixture
def sent(tmp_path: Path, pki: Pki, directory: Directory) -> Iterator[tuple[TestClient, Admitted]]:
    admitted = Admitted()
    with _client(tmp_path, pki, directory, Scope.APPLICATION, admitted) as client:
        yield client, admitted


def _post(client: TestClient, name: str, to: str = COUNCIL) -> Any:
    return client.post("/api/v1/structured", json={"to": to, "document": sample(name).decode()})


def test_a_valid_invoice_is_admitted_naming_its_type_with_a_receipt_asked(
    sent: tuple[TestClient, Admitted],
) -> None:
    """202; the admitted message is from the account, carries the document and its type."""
    client, admitted = sent
    answer = _post(client, "invoice-nz-valid.xml")
    assert answer.status_code == 202, answer.text
    (received,) = admitted.received
    assert received.mail_from == "alice@agency.govt.nz" and received.recipients == (COUNCIL,)
    found = find(received.body)
    assert found is not None and found.document == sample("invoice-nz-valid.xml")
    assert found.declared_type == answer.json()["document_type"]
    assert TYPE_FIELD.encode() in received.body and b"Disposition-Notification-To" in received.body


def test_a_broken_invoice_is_refused_with_its_rules_and_nothing_admitted(
    sent: tuple[TestClient, Admitted],
) -> None:
    """422 structured-invalid with the rule ids and findings; the admit seam never called."""
    client, admitted = sent
    answer = _post(client, "invoice-nz-missing-buyer.xml")
    assert answer.status_code == 422
    assert answer.json()["rules"] == ["BR-07", "PEPPOL-EN16931-R010", "PEPPOL-COMMON-R040"]
    assert answer.json()["findings"][0]["rule"] == "BR-07"
    assert admitted.received == []


def test_a_recipient_outside_securemail_is_refused(sent: tuple[TestClient, Admitted]) -> None:
    """409 not-a-member: structured documents go only to members."""
    client, admitted = sent
    answer = _post(client, "invoice-nz-valid.xml", to="ap@example.com")
    assert answer.status_code == 409 and answer.json()["error"] == "not-a-member"
    assert admitted.received == []


def test_a_mailbox_token_may_not_send_documents(
    tmp_path: Path, pki: Pki, directory: Directory
) -> None:
    """Only an application-scoped token reaches the structured API."""
    admitted = Admitted()
    with _client(tmp_path, pki, directory, Scope.MAILBOX, admitted) as client:
        answer = _post(client, "invoice-nz-valid.xml")
    assert answer.status_code == 403 and answer.json()["error"] == "scope-missing"


def test_the_pull_queue_lists_the_organisations_documents_until_taken(
    tmp_path: Path, pki: Pki, directory: Directory
) -> None:
    """GET inbox lists what waits for the token's organisation; POST taken removes it."""
    QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}").close()
    inbox = PullInbox(connect(f"sqlite:///{tmp_path / 'queue.db'}"))
    inbox.put("agency", {"delivery_id": "d1:ap@agency.govt.nz", "document": "PGEvPg=="}, NOW)
    inbox.put("ministry", {"delivery_id": "d2:x@ministry.govt.nz", "document": "PGEvPg=="}, NOW)
    with _client(tmp_path, pki, directory, Scope.APPLICATION, Admitted(), inbox=inbox) as client:
        (waiting,) = client.get("/api/v1/structured/inbox").json()["documents"]
        assert waiting["delivery_id"] == "d1:ap@agency.govt.nz"
        assert client.post(f"/api/v1/structured/inbox/{waiting['key']}/taken").status_code == 200
        assert client.get("/api/v1/structured/inbox").json()["documents"] == []
        again = client.post(f"/api/v1/structured/inbox/{waiting['key']}/taken")
        assert again.status_code == 404 and again.json()["error"] == "not-waiting"
