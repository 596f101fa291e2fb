"""Signing in and out of the web, and the dependencies that say who a request is.

Login is the accounts' Authenticator with ``Service.WEB`` (the throttle shared with SMTP
and IMAP, the event log, the TOTP rules of ``accounts.login.decide``): first the address
and password; when the account has TOTP, a second page asks for the code, and the pending
session (securemail.web.sessions) replays the whole check with it. A signed-in session is
always a new one (rotation). Logout deletes the session row.

Dependencies for the routers: :func:`signed_in` (pages; redirect to /login),
:func:`operator` (403 unless the account is an operator), :func:`api_principal` (a Bearer
token; 401) and :func:`csrf_protect` (every POST: the form's ``csrf`` and the Origin).

Security: every form field, the cookie and the Authorization header are untrusted. An
unknown address and a wrong password get the same page; only a right password learns more
(disabled, second factor needed), as ``model.Authenticator`` specifies.
"""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from securemail.access.model import Principal
from securemail.access.tokens import WebAccess
from securemail.accounts.model import AccountError, AccountReason, Denied, Granted, Service
from securemail.accounts.throttle import login_keys
from securemail.web.app import SignInRequiredError, render
from securemail.web.context import web_context
from securemail.web.security import same_origin
from securemail.web.sessions import COOKIE, Opened, WebSessions

router = APIRouter(include_in_schema=False)
_UNSET = object()
HOME = "/mail"

REFUSALS = {
    AccountReason.BAD_CREDENTIALS: "The address or password is not right.",
    AccountReason.DISABLED: "This account is disabled. Please contact your mail provider.",
    AccountReason.STRONG_AUTH_REQUIRED: (
        "This account must sign in to the web with an authenticator app, and none is set up "
        "yet. Please contact your mail provider to set one up."
    ),
    AccountReason.TOTP_REQUIRED: "Enter the 6-digit code from your authenticator app.",
    AccountReason.TOTP_INVALID: "That code is not right. Enter the current code from your app.",
    AccountReason.TOTP_REPLAYED: "That code was already used. Wait for the next code.",
}
_CODE_STEP = (AccountReason.TOTP_REQUIRED, AccountReason.TOTP_INVALID, AccountReason.TOTP_REPLAYED)


def sessions_of(request: Request) -> WebSessions:
    sessions: WebSessions = request.app.state.sessions
    return sessions


def access_of(request: Request) -> WebAccess:
    access: WebAccess = request.app.state.access
    return access


def source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def current(request: Request) -> Principal | None:
    """The signed-in principal of this request, or None (looked up once per request)."""
    cached = getattr(request.state, "principal", _UNSET)
    if cached is not _UNSET:
        return cast("Principal | None", cached)
    web = web_context(request)
    session = await web.db(sessions_of(request).find, request.cookies.get(COOKIE))
    principal = None
    if session is not None and session.method is not None:
        try:
            account = await web.db(web.accounts.service.get, session.account)
        except AccountError:
            account = None
        if account is not None and not account.disabled:
            scopes = session.scopes & await web.db(access_of(request).scopes, account.name)
            principal = Principal(account, scopes, session.id, session.csrf, session.method)
    request.state.principal = principal
    return principal


async def signed_in(request: Request) -> Principal:
    """The signed-in principal; a page without one redirects to /login."""
    principal = await current(request)
    if principal is None:
        raise SignInRequiredError
    return principal


async def operator(request: Request) -> Principal:
    """The signed-in principal if it is an operator; 403 otherwise."""
    principal = await signed_in(request)
    if not principal.operator:
        raise HTTPException(403, "operators only")
    return principal


async def api_principal(request: Request) -> Principal:
    """The account behind the request's Bearer token, with the token's scope; 401 otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    web = web_context(request)
    found = None
    if scheme.lower() == "bearer" and token.strip():
        found = await web.db(access_of(request).token_check, token.strip())
    account = None
    if found is not None:
        try:
            account = await web.db(web.accounts.service.get, found[0])
        except AccountError:
            account = None
    if found is None or account is None or account.disabled:
        raise HTTPException(401, "a valid API token is needed", {"WWW-Authenticate": "Bearer"})
    return Principal(account, found[1])


def check_origin(request: Request) -> None:
    """403 unless the request comes from the app's own origin."""
    if not same_origin(request.headers, request.app.state.origin):
        raise HTTPException(403, "cross-origin request refused")


async def csrf_protect(request: Request) -> Principal:
    """For every state-changing POST: same origin, a session, and its CSRF token; else 403."""
    check_origin(request)
    principal = await current(request)
    sent = (await request.form()).get("csrf")
    if principal is None or principal.csrf is None or not isinstance(sent, str):
        raise HTTPException(403, "the form is stale: reload the page")
    if not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        raise HTTPException(403, "the form is stale: reload the page")
    return principal


def set_cookie(request: Request, response: Response, opened: Opened, *, pending: bool) -> None:
    policy = sessions_of(request).policy
    lifetime = policy.pending if pending else policy.absolute
    response.set_cookie(
        COOKIE,
        opened.cookie,
        max_age=int(lifetime.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


@router.get("/login")
async def login_page(request: Request) -> Response:
    if await current(request) is not None:
        return RedirectResponse(HOME, status_code=303)
    return render(request, "login.html", {"step": "password"})


@router.post("/login")
async def login(
    request: Request, name: Annotated[str, Form()] = "", password: Annotated[str, Form()] = ""
) -> Response:
    check_origin(request)
    web = web_context(request)
    result = await web.accounts.authenticator.login(
        name, password, service=Service.WEB, source=source(request)
    )
    await _end_presented(request)
    if isinstance(result, Granted):
        return await _sign_in(request, result)
    if result.reason is AccountReason.TOTP_REQUIRED:
        account = login_keys(name, "")[0].value
        opened = await web.db(sessions_of(request).start_pending, account, password)
        page = render(request, "login.html", {"step": "code", "csrf": opened.session.csrf})
        set_cookie(request, page, opened, pending=True)
        return page
    return _refused(request, result, "password")


@router.post("/login/code")
async def login_code(
    request: Request, code: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = ""
) -> Response:
    check_origin(request)
    web, sessions = web_context(request), sessions_of(request)
    cookie = request.cookies.get(COOKIE, "")
    session = await web.db(sessions.find, cookie)
    if session is None or session.method is not None:
        return render(
            request, "login.html", {"step": "password", "error": _EXPIRED}, status_code=401
        )
    if not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
        raise HTTPException(403, "the form is stale: reload the page")
    password = sessions.pending_password(cookie, session) or ""
    result = await web.accounts.authenticator.login(
        session.account, password, service=Service.WEB, source=source(request), totp=code or None
    )
    if isinstance(result, Denied) and result.reason in _CODE_STEP:
        context = {"step": "code", "csrf": session.csrf, "error": REFUSALS[result.reason]}
        return render(request, "login.html", context, status_code=401)
    await web.db(sessions.end, session.id)
    if isinstance(result, Granted):
        return await _sign_in(request, result)
    return _refused(request, result, "password")


@router.post("/logout")
async def logout(request: Request) -> Response:
    principal = await csrf_protect(request)
    if principal.session is not None:
        await web_context(request).db(sessions_of(request).end, principal.session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


_EXPIRED = "The sign-in took too long. Please start again."


async def _end_presented(request: Request) -> None:
    """End whatever session the browser presented: a login always starts a new one."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        sessions = sessions_of(request)
        session = await web_context(request).db(sessions.find, cookie)
        if session is not None:
            await web_context(request).db(sessions.end, session.id)


async def _sign_in(request: Request, granted: Granted) -> Response:
    web, name = web_context(request), granted.account.name
    scopes = await web.db(access_of(request).scopes, name)
    opened = await web.db(sessions_of(request).start, name, scopes, granted.method)
    response = RedirectResponse(HOME, status_code=303)
    set_cookie(request, response, opened, pending=False)
    return response


def _refused(request: Request, denied: Denied, step: str) -> Response:
    if denied.reason is AccountReason.THROTTLED:
        minutes = max(1, round((denied.retry_after or 60) / 60))
        error = f"Too many attempts. Please try again in {minutes} minute(s)."
        page = render(request, "login.html", {"step": step, "error": error}, status_code=429)
        page.headers["Retry-After"] = str(int(denied.retry_after or 60))
        return page
    error = REFUSALS.get(denied.reason, REFUSALS[AccountReason.BAD_CREDENTIALS])
    return render(request, "login.html", {"step": step, "error": error}, status_code=401)
