"""The webmail under test: a tiny FastAPI app with the mailbox router, a real node config,
a real SQLite queue, a real directory and real Maildirs in tmp_path.

Webcore's modules (``securemail.web.app``, ``.auth``, ``.context``) are written in another
branch; until they are merged, the smallest stand-ins with the shared contract's names are
installed here, and the tests override the dependencies exactly as the contract says.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader
from starlette.responses import Response
from starlette.testclient import TestClient

from securemail.accounts.model import Account
from securemail.deliver.maildir import mailbox_path
from securemail.directory import Directory, next_version
from securemail.node.config import NodeConfig, load_config
from securemail.queue import QueueStore
from securemail.receive.model import Received
from securemail.replies import Reply
from securemail.web.model import Principal, Scope
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, member_of

CSRF = "csrf-token-for-tests"
NODE = "gw.agency.govt.nz"
_BASE = (
    '<!doctype html><html lang="en"><head><title>{% block title %}{% endblock %}</title></head>'
    "<body><main>{% block content %}{% endblock %}</main></body></html>"
)
_TEMPLATES = Path(__file__).parents[2] / "src" / "securemail" / "web" / "templates"


def _stand_in(name: str, build: Callable[[types.ModuleType], None]) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        module = types.ModuleType(name)
        build(module)
        sys.modules[name] = module


def _context_module(module: types.ModuleType) -> None:
    @dataclass(frozen=True)
    class WebContext:
        config: Any
        accounts: Any
        store: Any
        db: Any
        directory: Any
        clock: Any
        maildir_for: Any
        admit: Any

    def web_context(request: Request) -> Any:
        return request.app.state.web

    module.WebContext = WebContext  # type: ignore[attr-defined]
    module.web_context = web_context  # type: ignore[attr-defined]


def _auth_module(module: types.ModuleType) -> None:
    def refusal(name: str) -> Callable[[Request], Any]:
        def refuse(request: Request) -> Any:
            raise HTTPException(401, f"{name}: a stand-in, overridden by each test")

        return refuse

    for name in ("signed_in", "operator", "api_principal", "csrf_protect"):
        setattr(module, name, refusal(name))


def _app_module(module: types.ModuleType) -> None:
    loader = ChoiceLoader([FileSystemLoader(_TEMPLATES), DictLoader({"base.html": _BASE})])
    templates = Jinja2Templates(directory=str(_TEMPLATES))
    templates.env.loader = loader

    def render(request: Request, name: str, context: dict[str, Any]) -> Response:
        full = {**context, "principal": None, "csrf": CSRF}
        return templates.TemplateResponse(request, name, full)

    module.templates = templates  # type: ignore[attr-defined]
    module.render = render  # type: ignore[attr-defined]


_stand_in("securemail.web.context", _context_module)
_stand_in("securemail.web.auth", _auth_module)
_stand_in("securemail.web.app", _app_module)

from securemail.web import auth, context, mailbox  # noqa: E402

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
    return Account(
        name,
        (name, "a.example@agency.govt.nz"),
        "Alice Example",
        None,
        False,
        False,
        None,
        False,
        NOW,
    )


@pytest.fixture
def webmail(tmp_path: Path, pki: Pki, directory: Directory) -> Iterator[Webmail]:
    (tmp_path / "node.toml").write_text(CONFIG)
    pki.write_ca(tmp_path)
    config = load_config(tmp_path / "node.toml")
    store = QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}")
    maildirs = tmp_path / "mail"
    maildirs.mkdir()
    who = account()
    admitted = Admitted()

    async def db(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(call, *args, **kwargs)

    app = FastAPI()
    app.include_router(mailbox.router)
    app.state.web = context.WebContext(
        config=config,
        accounts=None,
        store=store,
        db=db,
        directory=lambda: directory,
        clock=lambda: NOW,
        maildir_for=lambda address: mailbox_path(maildirs, address),
        admit=admitted,
    )
    principal = Principal(who, frozenset({Scope.MAILBOX}), session="s1", csrf=CSRF)
    app.dependency_overrides[auth.signed_in] = lambda: principal
    app.dependency_overrides[auth.csrf_protect] = lambda: None
    root = mailbox_path(maildirs, who.primary)
    assert root is not None
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        yield Webmail(client, root, who, config, store, admitted)
    store.close()
