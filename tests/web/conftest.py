"""A web app on real accounts in a SQLite file, with a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from securemail.accounts.node import Accounts
from securemail.config.node import NodeConfig, parse_config
from securemail.queue import QueueStore
from securemail.receive import Received
from securemail.replies import Reply
from securemail.web.app import make_app
from securemail.web.context import WebContext
from tests.accounts.conftest import ALICE, DOMAIN, PASSWORD, Clock, open_at

__all__ = ["ALICE", "PASSWORD", "Clock"]

ORIGIN = "https://testserver"
T = TypeVar("T")


def node_config(base: Path) -> NodeConfig:
    return parse_config(
        {
            "node": {"name": "mail.example.govt.nz", "data_dir": "data"},
            "federation": {"name": "test", "anchor": "ca.pem", "directory": "dir.json"},
            "peer": {"listen": "127.0.0.1:0", "tls_certificate": "c.pem", "tls_key": "k.pem"},
            "relay": {"listen": "127.0.0.1:0"},
            "web": {"listen": "127.0.0.1:0", "public_origin": ORIGIN},
            "organisation": [
                {
                    "org_id": "example",
                    "domains": [DOMAIN],
                    "keys": "keys",
                    "delivery": {"kind": "maildir", "path": "mail", "accounts": True},
                }
            ],
        },
        base,
    )


async def run_off_loop(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(call, *args, **kwargs)


async def refuse(received: Received) -> Reply:
    return Reply(451, "4.3.0", "not in these tests")


@pytest.fixture
def web(tmp_path: Path, clock: Clock) -> Iterator[WebContext]:
    config = node_config(tmp_path)
    config.data_dir.mkdir()
    url = f"sqlite:///{tmp_path / 'node.db'}"
    accounts: Accounts = open_at(url, config.data_dir / "accounts.log", clock)
    accounts.service.add(ALICE, PASSWORD, display_name="Alice")
    store = QueueStore.open(url)
    yield WebContext(
        config=config,
        accounts=accounts,
        store=store,
        db=run_off_loop,
        directory=lambda: None,
        clock=clock,
        maildir_for=lambda primary: None,
        admit=refuse,
        seal=accounts.mailbox_seal,
    )
    store.close()
    accounts.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(web: WebContext) -> Iterator[TestClient]:
    with TestClient(make_app(web, routers=()), base_url=ORIGIN) as test_client:
        yield test_client


def sign_in(client: TestClient, name: str = ALICE, password: str = PASSWORD, **extra: str) -> Any:
    """POST the login form from our own origin; the response (not followed)."""
    return client.post(
        "/login",
        data={"name": name, "password": password, **extra},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )


def csrf_of(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def post(client: TestClient, path: str, data: dict[str, str], **kwargs: Any) -> Any:
    """POST a form with the CSRF token of /account and our Origin."""
    token = csrf_of(client.get("/account").text)
    return client.post(
        path,
        data={"csrf": token, **data},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
        **kwargs,
    )
