"""The records role end to end on the whole app: granted by the CLI's service and recorded,
taken into a session at sign-in, needed for the console's exports, and never a token."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from securemail.access.model import Scope
from securemail.access.tokens import WebAccess
from securemail.records.schema import log
from securemail.storage.engine import transaction
from securemail.web.app import make_app
from securemail.web.context import WebContext
from tests.conftest import Pki
from tests.web.conftest import ALICE, ORIGIN, csrf_of, sign_in

AROHA = "aroha@msp.nz"


@pytest.fixture
def client(web: WebContext, pki: Pki) -> Iterator[TestClient]:
    """The whole app, its console able to sign exports; Alice an operator."""
    signing = dataclasses.replace(web, records_signer=lambda: pki.agency.signer)
    with TestClient(make_app(signing), base_url=ORIGIN) as client:
        access(client).set_operator(ALICE, True)
        yield client


def access(client: TestClient) -> WebAccess:
    found: WebAccess = client.app.state.access  # type: ignore[attr-defined]
    return found


def events(web: WebContext, event: str) -> list[dict[str, object]]:
    query = select(log.c.record).where(log.c.event == event)
    with transaction(web.accounts.engine, "test", write=False) as conn:
        return [json.loads(t) for t in conn.execute(query).scalars()]


def export_form(client: TestClient) -> dict[str, str]:
    page = client.get("/console/records")
    assert page.status_code == 200, page.text
    return {"csrf": csrf_of(page.text), "kind": "subject", "about": AROHA}


def test_an_operator_needs_the_role_and_a_new_sign_in_to_export(
    client: TestClient, web: WebContext
) -> None:
    """Without the role the page and the form are 403; the grant is recorded with who gave
    it; a session signed in after the grant exports into the node's storage (201)."""
    sign_in(client, ALICE)
    queue_page = client.get("/console/queue")
    assert queue_page.status_code == 200 and "Records requests" not in queue_page.text
    assert client.get("/console/records").status_code == 403
    form = {"csrf": csrf_of(queue_page.text), "about": AROHA}
    refused = client.post("/console/records", data=form, headers={"Origin": ORIGIN})
    assert refused.status_code == 403
    access(client).set_records_role(ALICE, True, by="cli:officer")
    (granted,) = events(web, "records.role-granted")
    assert granted["subjects"] == [ALICE] and granted["details"] == {
        "account": ALICE, "by": "cli:officer"}  # fmt: skip
    assert client.get("/console/records").status_code == 403  # the old session's scopes
    sign_in(client, ALICE)
    made = client.post("/console/records", data=export_form(client), headers={"Origin": ORIGIN})
    assert made.status_code == 201, made.text
    (folder,) = (web.config.data_dir / "exports").iterdir()
    assert (folder / "manifest.json").is_file()
    (exported,) = events(web, "records.exported")
    assert exported["details"]["by"] == f"console:{ALICE}"  # type: ignore[index]


def test_revoking_the_role_or_operator_closes_the_page_at_once(
    client: TestClient, web: WebContext
) -> None:
    """A live session loses the exports on the next request after either is revoked, and
    the revocation is recorded."""
    access(client).set_records_role(ALICE, True, by="cli:officer")
    sign_in(client, ALICE)
    assert client.get("/console/records").status_code == 200
    access(client).set_records_role(ALICE, False, by="cli:officer")
    assert client.get("/console/records").status_code == 403
    assert len(events(web, "records.role-revoked")) == 1
    access(client).set_records_role(ALICE, True, by="cli:officer")
    access(client).set_operator(ALICE, False)
    assert client.get("/console/records").status_code == 403


def test_the_records_role_is_never_an_api_token(client: TestClient) -> None:
    """A token cannot carry the records scope, and the scope is not among the token's."""
    access(client).set_records_role(ALICE, True, by="cli:officer")
    with pytest.raises(ValueError, match="not API tokens"):
        access(client).token_add(ALICE, "exports", Scope.RECORDS)
    assert Scope.RECORDS in access(client).scopes(ALICE)
