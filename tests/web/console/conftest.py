"""A console/API test app: the routers on a tiny FastAPI app, with stand-ins for webcore.

Every dependency that decides who is signed in is overridden: the principal is whatever
the test says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

from securemail.access.model import Principal, Scope
from securemail.accounts.model import Account
from securemail.accounts.node import Accounts
from securemail.config.node import NodeConfig
from securemail.queue import QueueStore
from securemail.web.context import WebContext
from tests.accounts.conftest import make_account
from tests.conftest import SEAL
from tests.node.conftest import federation, founded
from tests.web.conftest import refuse, run_off_loop

__all__ = ["federation", "founded"]

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


DEPENDENCIES = ("signed_in", "operator", "api_principal", "csrf_protect")


def account(name: str = "operator@agency.govt.nz", *addresses: str) -> Account:
    return make_account(name, *addresses)


OPERATOR = Principal(account(), frozenset({Scope.OPERATOR, Scope.MAILBOX}), "s1", "csrf-1")


def context_for(store: QueueStore) -> WebContext:
    """A WebContext for the console and API routes: a real queue, a bare node config."""
    config = SimpleNamespace(name="test-node", region="NZ", organisations=())
    return WebContext(
        config=cast("NodeConfig", config),
        # the lockout pages use the accounts (not tested here); opening an entry is
        # recorded in the node database, where the queue is
        accounts=cast("Accounts", SimpleNamespace(engine=store._engine)),
        store=store,
        db=run_off_loop,
        directory=lambda: None,
        clock=lambda: NOW,
        maildir_for=lambda primary: None,
        admit=refuse,
        seal=SEAL,
    )
