"""The webmail under test: a tiny FastAPI app with the mailbox router, a real node config,
a real SQLite queue, a real directory and real Maildirs in tmp_path.

Who is signed in is decided by overriding webcore's dependencies (``signed_in``,
``csrf_protect``), so these tests are about the mailbox, not the login.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from securemail.access.model import Principal, Scope
from securemail.accounts.model import Account
from securemail.accounts.node import Accounts
from securemail.config.node import NodeConfig, load_config
from securemail.deliver.maildir import mailbox_path
from securemail.directory import Directory, next_version
from securemail.queue import QueueStore
from securemail.receive.model import Received
from securemail.replies import Reply
from securemail.web import auth, context, mailbox
from securemail.web.app import mount_static
from tests.accounts.conftest import make_account
from tests.conftest import NOW, SEAL, Pki
from tests.directory.conftest import FEDERATION, member_of
from tests.web.conftest import run_off_loop

CSRF = "csrf-token-for-tests"
NODE = "gw.agency.govt.nz"

CONFIG = f"""
[node]
name = "{NODE}"
data_dir = "data"

[federation]
name = "{FEDERATION}"
anchor = "ca.pem"
directory = "https://directory.example.nz/directory.json"

[peer]
listen = "127.0.0.1:0"
tls_certificate = "tls.pem"
tls_key = "tls.key"

[relay]
listen = "127.0.0.1:0"
networks = ["127.0.0.0/8"]

[[organisation]]
org_id = "agency"
domains = ["agency.govt.nz"]
keys = "orgs/agency"
[organisation.delivery]
kind = "maildir"
path = "mail"
"""


@dataclass
class Admitted:
    """The admit seam, recording what it was given (the real one commits to the queue)."""

    reply: Reply = field(default_factory=lambda: Reply(250, "2.0.0", "Queued", "", ""))
    received: list[Received] = field(default_factory=list)

    async def __call__(self, received: Received) -> Reply:
        self.received.append(received)
        return self.reply


@dataclass
class Webmail:
    client: TestClient
    root: Path  # alice's Maildir
    account: Account
    config: NodeConfig
    store: QueueStore
    admitted: Admitted


@pytest.fixture(scope="session")
def directory(pki: Pki) -> Directory:
    members = (member_of(pki.agency, "agency"), member_of(pki.ministry, "ministry"))
    return next_version(
        None, None, federation=FEDERATION, members=members, crls=(pki.crl,), now=NOW
    )


def account(name: str = "alice@agency.govt.nz") -> Account:
    return make_account(name, "a.example@agency.govt.nz", display_name="Alice Example")


@contextmanager
def mail_client(
    config: NodeConfig,
    store: QueueStore,
    maildirs: Path,
    who: Account,
    *,
    directory: Directory | None,
    admit: Admitted | None = None,
) -> Iterator[TestClient]:
    """A client of the mailbox router signed in as ``who``, over the Maildirs in ``maildirs``."""
    app = FastAPI()
    mount_static(app)
    app.include_router(mailbox.router)
    app.state.web = context.WebContext(
        config=config,
        accounts=cast("Accounts", None),  # the mailbox routes never use the accounts
        store=store,
        db=run_off_loop,
        directory=lambda: directory,
        clock=lambda: NOW,
        maildir_for=lambda address: mailbox_path(maildirs, address),
        admit=admit or Admitted(),
        seal=SEAL,
    )
    principal = Principal(who, frozenset({Scope.MAILBOX}), session="s1", csrf=CSRF)
    app.dependency_overrides[auth.signed_in] = lambda: principal
    app.dependency_overrides[auth.csrf_protect] = lambda: None
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        yield client


def mail_config(base: Path, pki: Pki) -> NodeConfig:
    """The node configuration of these tests, its files under ``base``."""
    (base / "node.toml").write_text(CONFIG)
    pki.write_ca(base)
    return load_config(base / "node.toml")


@pytest.fixture
def webmail(tmp_path: Path, pki: Pki, directory: Directory) -> Iterator[Webmail]:
    config = mail_config(tmp_path, pki)
    store = QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}")
    maildirs = tmp_path / "mail"
    maildirs.mkdir()
    who = account()
    admitted = Admitted()
    root = mailbox_path(maildirs, who.primary)
    assert root is not None
    with mail_client(config, store, maildirs, who, directory=directory, admit=admitted) as client:
        yield Webmail(client, root, who, config, store, admitted)
    store.close()
