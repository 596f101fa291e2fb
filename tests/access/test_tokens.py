"""The records role on both engines: a session scope only for an operator who holds it,
each change recorded in the records log in the same transaction, never a token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from securemail.access.model import Scope
from securemail.access.store import WebStore
from securemail.access.tokens import WebAccess
from securemail.accounts.events import AccountEvents
from securemail.accounts.model import AccountError
from securemail.records.schema import log
from securemail.storage.engine import transaction
from tests.accounts.conftest import ALICE, PASSWORD, Clock, open_at
from tests.queue.conftest import pg_schema
from tests.records.conftest import url

__all__ = ["pg_schema", "url"]


@pytest.fixture
def access(url: str, tmp_path: Path) -> Iterator[WebAccess]:
    """The web's access service over a node database holding Alice's account."""
    clock = Clock()
    with open_at(url, tmp_path / "accounts.log", clock) as accounts:
        accounts.service.add(ALICE, PASSWORD, display_name="Alice")
        yield WebAccess(WebStore(accounts.engine), AccountEvents(tmp_path / "a.log"), clock)


def _role_records(access: WebAccess) -> list[dict[str, object]]:
    query = select(log.c.record).where(log.c.event.like("records.role-%")).order_by(log.c.seq)
    with transaction(access.store._engine, "test", write=False) as conn:
        return [json.loads(t) for t in conn.execute(query).scalars()]


def test_the_records_scope_needs_the_operator_role_too(access: WebAccess) -> None:
    """The role alone adds no scope; with the operator role the session takes ``records``."""
    access.set_records_role(ALICE, True, by="cli:officer")
    assert access.scopes(ALICE) == {Scope.MAILBOX}
    access.set_operator(ALICE, True)
    assert access.scopes(ALICE) == {Scope.MAILBOX, Scope.OPERATOR, Scope.RECORDS}
    access.set_records_role(ALICE, False, by="cli:officer")
    assert access.scopes(ALICE) == {Scope.MAILBOX, Scope.OPERATOR}


def test_each_change_is_recorded_and_an_unknown_account_changes_nothing(
    access: WebAccess,
) -> None:
    """A grant and a revocation are two records naming the account and who acted; an
    unknown account is refused without a record."""
    access.set_records_role(ALICE, True, by="cli:officer")
    access.set_records_role(ALICE, False, by="cli:officer")
    with pytest.raises(AccountError):
        access.set_records_role("nobody@example.nz", True, by="cli:officer")
    found = _role_records(access)
    assert [r["event"] for r in found] == ["records.role-granted", "records.role-revoked"]
    assert all(r["subjects"] == [ALICE] and r["class"] == "security" for r in found)


def test_no_token_carries_the_records_scope(access: WebAccess) -> None:
    """Asking for a records-scoped API token is refused, whatever roles the account has."""
    access.set_operator(ALICE, True)
    access.set_records_role(ALICE, True, by="cli:officer")
    with pytest.raises(ValueError, match="not API tokens"):
        access.token_add(ALICE, "exports", Scope.RECORDS)
