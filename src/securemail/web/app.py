"""The web application: one FastAPI app with the safety middleware, pages and routers.

``make_app`` wires the parts: the WebContext on ``app.state.web``, the session and access
services built on the node database, the security headers, static files, the sign-in and
account pages (webcore) and the webmail, console and API routers. Pages are rendered with
:func:`render`, which gives every template the signed-in ``principal`` and its ``csrf``.

Error pages say only what kind of error happened (not found, forbidden, a server fault):
never a path, a stack trace or an exception text. Under /api/ errors stay JSON.

Security: every request body and header is untrusted; the routers check sessions, CSRF
tokens and origins through the dependencies in securemail.web.auth.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.exceptions import HTTPException

from securemail.access.store import WebStore
from securemail.access.tokens import WebAccess
from securemail.accounts.events import ACCOUNTS_LOG, AccountEvents
from securemail.web import dates
from securemail.web.context import WebContext
from securemail.web.security import SecurityHeaders, add_headers
from securemail.web.sessions import SessionPolicy, WebSessions

HERE = Path(__file__).parent
ROUTERS = (
    "securemail.web.mailbox",
    "securemail.web.console",
    "securemail.web.records_console",
    "securemail.web.api",
    "securemail.web.api_operator",
    "securemail.web.api_structured",
    "securemail.web.discovery",
)
templates = Jinja2Templates(directory=HERE / "templates")


@pass_context
def _when(page: Context, value: datetime | str | None) -> str:
    return dates.when(value, page.get("zone", dates.DEFAULT_ZONE))


@pass_context
def _when_short(page: Context, value: datetime | str | None) -> str:
    return dates.when_short(value, page.get("zone", dates.DEFAULT_ZONE))


templates.env.filters.update(when=_when, when_short=_when_short, iso=dates.iso, person=dates.person)
log = logging.getLogger("securemail.web")

_TITLES = {
    400: "The request was not understood",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    429: "Too many requests",
    500: "Something went wrong",
}


class SignInRequiredError(Exception):
    """A page needs a signed-in session; answered with a redirect to /login."""


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """The template ``name`` with ``principal`` and ``csrf`` (None when signed out) added,
    and ``zone``: the time zone the signed-in account reads dates in."""
    principal = getattr(request.state, "principal", None)
    account = getattr(principal, "account", None)
    values = {
        "principal": principal,
        "csrf": getattr(principal, "csrf", None),
        "zone": dates.zone_named(getattr(account, "time_zone", None)),
    }
    return templates.TemplateResponse(
        request, name, values | dict(context or {}), status_code=status_code
    )


def mount_static(app: FastAPI) -> None:
    """Serve the style sheet and icons under /static (what ``url_for("static")`` names)."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def make_app(
    web: WebContext,
    *,
    routers: Sequence[APIRouter] | None = None,
    origin: str | None = None,
    policy: SessionPolicy = SessionPolicy(),  # noqa: B008 (frozen, shared safely)
) -> FastAPI:
    """The node's web app. ``routers`` default to the webmail, console and API routers;
    ``origin`` to ``[web] public_origin`` (required when the config gives none)."""
    from securemail.web import account, auth  # noqa: PLC0415 (they import render from here)

    origin = origin or (web.config.web.public_origin if web.config.web else None)
    if origin is None:
        raise ValueError("make_app needs the public origin ([web] public_origin)")
    app = FastAPI(
        title="SecureMail",
        docs_url=None,  # Swagger UI loads scripts from a CDN: the CSP forbids them
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    store = WebStore(web.accounts.engine)
    app.state.web = web
    app.state.origin = origin
    app.state.sessions = WebSessions(store, web.clock, policy)
    app.state.access = WebAccess(
        store, AccountEvents(web.config.data_dir / ACCOUNTS_LOG), web.clock
    )
    app.add_middleware(SecurityHeaders)
    mount_static(app)
    for router in (auth.router, account.router, *_routers(routers)):
        # The OpenAPI description is the JSON API's; HTML pages are not part of it.
        app.include_router(router, include_in_schema=router.prefix.startswith("/api/"))
    _add_error_pages(app)
    from securemail.web import api  # noqa: PLC0415 (api imports the context, as above)

    app.add_exception_handler(api.ApiError, api.error_response)
    return app


def _routers(routers: Sequence[APIRouter] | None) -> Sequence[APIRouter]:
    if routers is not None:
        return routers
    return [importlib.import_module(name).router for name in ROUTERS]


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(SignInRequiredError)
    async def sign_in(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 (registered for it)
        return _error(request, exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: Exception) -> Response:
        return _error(request, 400, "the request is not valid", None)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("web: %s %s failed", request.method, request.url.path, exc_info=exc)
        response = _error(request, 500, "server error", None)
        add_headers(response.headers, request.scope)  # answered outside the middleware
        return response


# The API's error body is {"error": reason code, "detail": text}, as api.ErrorBody says.
_API_ERRORS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    500: "server-error",
}


def _error(
    request: Request, status: int, detail: object, headers: Mapping[str, str] | None
) -> Response:
    if request.url.path.startswith("/api/"):
        body = {"error": _API_ERRORS.get(status, "error"), "detail": str(detail)}
        return JSONResponse(body, status_code=status, headers=headers)
    title = _TITLES.get(status, "The request could not be completed")
    page = render(request, "error.html", {"title": title, "status": status}, status_code=status)
    page.headers.update(headers or {})
    return page
