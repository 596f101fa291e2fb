"""A console/API test app: the routers on a tiny FastAPI app, with stand-ins for webcore.

Until webcore's ``web/auth.py``, ``web/context.py`` and ``base.html`` land, the smallest
stand-ins with the agreed names are installed here (tests only), and every dependency is
overridden anyway: who is signed in is whatever ``Client.principal`` says.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from jinja2 import ChoiceLoader, DictLoader

from securemail.accounts.model import Account
from securemail.web.model import Principal, Scope
from tests.node.conftest import federation, founded

__all__ = ["federation", "founded"]

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BASE = """<!doctype html><html lang="en"><head><title>{% block title %}{% endblock %}</title>
</head><body><main>{% block content %}{% endblock %}</main></body></html>"""


DEPENDENCIES = ("signed_in", "operator", "api_principal", "csrf_protect")


def _overridden(name: str) -> Callable[[Any], Any]:
    """A distinct stand-in per dependency (overrides are keyed by the function)."""

    def refuse(request: Any) -> Any:
        raise AssertionError(f"{name} is overridden in every test")

    return refuse


def _install_stand_ins() -> None:
    """webcore's dependency names, as modules, if webcore has not landed in this tree."""
    try:
        import securemail.web.auth  # noqa: PLC0415
        import securemail.web.context  # noqa: F401, PLC0415
    except ImportError:
        auth = types.ModuleType("securemail.web.auth")
        context = types.ModuleType("securemail.web.context")

        for module, name in [(auth, n) for n in DEPENDENCIES] + [(context, "web_context")]:
            setattr(module, name, _overridden(name))
        context.WebContext = StandInContext  # type: ignore[attr-defined]
        sys.modules["securemail.web.auth"] = auth
        sys.modules["securemail.web.context"] = context


@dataclass(frozen=True)
class StandInContext:
    """The fields of webcore's WebContext that the console and the API use."""

    config: Any
    accounts: Any
    store: Any
    directory: Callable[[], Any]
    clock: Callable[[], datetime] = field(default=lambda: NOW)

    async def db(self, call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return partial(call, *args, **kwargs)()


_install_stand_ins()


def account(name: str = "operator@agency.govt.nz", *addresses: str) -> Account:
    return Account(
        name=name,
        addresses=(name, *addresses),
        display_name=name,
        quota=None,
        strong_auth_required=False,
        totp_enrolled=False,
        sole_use_acknowledged=None,
        disabled=False,
        created=NOW,
    )


OPERATOR = Principal(account(), frozenset({Scope.OPERATOR, Scope.MAILBOX}), "s1", "csrf-1")


def stand_in_base(pages: Any) -> None:
    """Let the console's pages extend a minimal base.html when webcore's is not here."""
    loader = pages.env.loader
    pages.env.loader = ChoiceLoader([loader, DictLoader({"base.html": BASE})])
