"""The account pages: password, TOTP enrolment, app passwords, time zone, sole use.

Every change is a POST behind ``csrf_protect``; changing a factor (the password, TOTP, a
new app password) first re-checks the current password through the Authenticator, so a
borrowed session cannot take the account over and guesses are throttled like logins. The
account service logs every change as an account event.

Security: form fields are untrusted; a new app password and a TOTP secret are shown once
on the response page and kept nowhere else. The QR code is inline SVG (no script).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import qrcode  # type: ignore[import-untyped]
import qrcode.image.svg  # type: ignore[import-untyped]
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from securemail.access.model import Principal
from securemail.accounts.model import AccountError, AccountReason, Granted, Service
from securemail.accounts.service import time_zones
from securemail.web.app import render
from securemail.web.auth import csrf_protect, sessions_of, signed_in, source
from securemail.web.confirmations import confirmed_of
from securemail.web.context import web_context

router = APIRouter(prefix="/account", include_in_schema=False)
SignedIn = Annotated[Principal, Depends(signed_in)]
Posted = Annotated[Principal, Depends(csrf_protect)]
WITHDRAWN = {  # what the account page says after a Withdraw (web.holder_contacts)
    "sent": "Your withdrawal is sent; the organisation's register takes it when it arrives.",
    "unknown": "That verification is not among those you confirmed.",
    "failed": "Your withdrawal could not be sent; please try again later.",
}
WRONG_PASSWORD = "The current password is not right."  # noqa: S105 (a message)


@router.get("")
async def account_page(request: Request, principal: SignedIn) -> Response:
    return await _page(request, principal)


@router.post("/password")
async def change_password(
    request: Request,
    principal: Posted,
    current: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    web, name = web_context(request), principal.account.name
    if (error := await _reauthenticate(request, principal, current)) is not None:
        return await _page(request, principal, error=error, status=403)
    if new != confirm:
        return await _page(request, principal, error="The new passwords differ.", status=400)
    try:
        await web.db(web.accounts.service.set_password, name, new)
    except AccountError as refused:
        return await _page(request, principal, error=refused.detail, status=400)
    await web.db(sessions_of(request).end_others, name, principal.session)
    return await _page(request, principal, notice="Your password is changed.")


@router.post("/totp")
async def totp_begin(
    request: Request, principal: Posted, current: Annotated[str, Form()] = ""
) -> Response:
    web = web_context(request)
    if (error := await _reauthenticate(request, principal, current)) is not None:
        return await _page(request, principal, error=error, status=403)
    try:
        uri = await web.db(web.accounts.service.totp_begin, principal.account.name)
    except AccountError as refused:
        return await _page(request, principal, error=refused.detail, status=400)
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    context = {"qr": qr_svg(uri), "secret": secret}
    return render(request, "account/totp.html", context)


@router.post("/totp/confirm")
async def totp_confirm(
    request: Request, principal: Posted, code: Annotated[str, Form()] = ""
) -> Response:
    web = web_context(request)
    try:
        await web.db(web.accounts.service.totp_confirm, principal.account.name, code)
    except AccountError as refused:
        error = (
            "That code is not right; enter the current one."
            if refused.reason in (AccountReason.TOTP_INVALID, AccountReason.TOTP_REPLAYED)
            else refused.detail
        )
        return await _page(request, principal, error=error, status=400)
    return await _page(request, principal, notice="Your authenticator app is set up.")


@router.post("/app-passwords")
async def app_password_add(
    request: Request,
    principal: Posted,
    current: Annotated[str, Form()] = "",
    label: Annotated[str, Form()] = "",
) -> Response:
    web = web_context(request)
    if (error := await _reauthenticate(request, principal, current)) is not None:
        return await _page(request, principal, error=error, status=403)
    try:
        ident, secret = await web.db(
            web.accounts.service.app_password_add, principal.account.name, label
        )
    except (AccountError, ValueError) as refused:
        detail = refused.detail if isinstance(refused, AccountError) else str(refused)
        return await _page(request, principal, error=detail, status=400)
    return await _page(request, principal, created=(ident, secret))


@router.post("/app-passwords/{ident}/revoke")
async def app_password_revoke(request: Request, principal: Posted, ident: str) -> Response:
    web = web_context(request)
    try:
        await web.db(web.accounts.service.app_password_revoke, principal.account.name, ident)
    except AccountError as refused:
        return await _page(request, principal, error=refused.detail, status=404)
    return RedirectResponse("/account", status_code=303)


@router.post("/time-zone")
async def time_zone(
    request: Request, principal: Posted, zone: Annotated[str, Form()] = ""
) -> Response:
    web = web_context(request)
    try:
        account = await web.db(web.accounts.service.set_time_zone, principal.account.name, zone)
    except AccountError as refused:
        return await _page(request, principal, error=refused.detail, status=400)
    shown = account.time_zone or "New Zealand"
    principal = request.state.principal = replace(principal, account=account)
    return await _page(request, principal, notice=f"Dates are now shown in {shown} time.")


@router.post("/sole-use")
async def sole_use(
    request: Request, principal: Posted, agree: Annotated[str, Form()] = ""
) -> Response:
    if agree != "yes":
        return await _page(request, principal, error="Tick the box to acknowledge.", status=400)
    web = web_context(request)
    await web.db(web.accounts.service.acknowledge_sole_use, principal.account.name)
    return RedirectResponse("/account", status_code=303)


def qr_svg(uri: str) -> Markup:
    """The QR code of ``uri`` as an inline SVG element (our own markup: safe to embed)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    text: str = image.to_string(encoding="unicode")
    start = text.index("<svg")
    svg = text[start:].replace("<svg", '<svg role="img" aria-label="QR code to scan"', 1)
    return Markup(svg)  # noqa: S704 (generated by qrcode from our URI, no user markup)


async def _reauthenticate(request: Request, principal: Principal, password: str) -> str | None:
    """None if ``password`` is the account's current one; else what to tell the user."""
    web = web_context(request)
    result = await web.accounts.authenticator.login(
        principal.account.name, password, service=Service.WEB, source=source(request)
    )
    if isinstance(result, Granted) or result.reason is AccountReason.TOTP_REQUIRED:
        return None
    if result.reason is AccountReason.THROTTLED:
        return "Too many attempts. Please try again later."
    return WRONG_PASSWORD


async def _page(
    request: Request,
    principal: Principal,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    web, name = web_context(request), principal.account.name
    account = await web.db(web.accounts.service.get, name)
    apps = await web.db(web.accounts.service.app_passwords, name)
    values = {
        "account": account,
        "app_passwords": apps,
        "time_zones": time_zones(),
        "verifications": await confirmed_of(web, principal),
        "withdrawn": WITHDRAWN.get(request.query_params.get("withdrawn", "")),
    } | context
    return render(request, "account/index.html", values, status_code=status)
