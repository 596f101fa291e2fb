"""The operator console's Contacts page: the register, paged and filtered, and its actions.

Start a verification (address, purpose, requirements) and revoke one, by POST forms behind
``csrf_protect``; the page works without script. What it shows and does comes from
:mod:`securemail.contacts.desk`, the code path of ``securemail contacts`` and the API.

Security: operator sessions only (the router's dependency). The filter, address and
purpose come from the browser: the desk checks them and the register binds them; they
reach the page only through Jinja2's autoescaping. Refusals show their reason code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from securemail.access.model import Principal
from securemail.contacts import desk
from securemail.policy.assurance import REQUIREMENTS
from securemail.web.auth import operator
from securemail.web.console import CHECKED, Operator, Web, pages
from securemail.web.context import WebContext

router = APIRouter(prefix="/console/contacts", dependencies=[Depends(operator)])
PAGE = 50


@router.get("", response_class=HTMLResponse, name="console_contacts")
async def contacts_page(
    request: Request,
    principal: Operator,
    web: Web,
    address: Annotated[str, Query(max_length=320)] = "",
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> HTMLResponse:
    return await _render(request, principal, web, address=address, offset=offset)


async def _render(
    request: Request,
    principal: Principal,
    web: WebContext,
    *,
    address: str = "",
    offset: int = 0,
    refused: desk.ContactError | None = None,
) -> HTMLResponse:
    found = None
    if web.contacts is not None:
        found = await web.db(desk.page, web.contacts.register, address, offset, PAGE)
    context: dict[str, Any] = {
        "principal": principal,
        "csrf": principal.csrf,
        "found": found,
        "address": address,
        "now": web.clock(),
        "requirements": REQUIREMENTS,
        "organisations": [o.org_id for o in web.config.organisations],
        "refused": refused,
        "previous_url": None
        if offset == 0
        else str(request.url.include_query_params(offset=max(0, offset - PAGE))),
        "next_url": None
        if found is None or found.next_offset is None
        else str(request.url.include_query_params(offset=found.next_offset)),
    }
    status = 200 if refused is None else 404 if refused.reason == "no-such-contact" else 400
    return pages.TemplateResponse(request, "console/contacts.html", context, status_code=status)


@router.post("", dependencies=CHECKED, response_model=None, name="console_contacts_start")
async def start(
    request: Request,
    principal: Operator,
    web: Web,
    *,
    address: Annotated[str, Form(max_length=320)],
    purpose: Annotated[str, Form(max_length=500)],
    require: Annotated[list[str] | None, Form()] = None,
    valid_days: Annotated[int, Form(ge=1, le=3660)] = 365,
    org_id: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    """Ask ``address``'s holder to confirm it, then show the register again."""
    if web.contacts is None:
        return await _render(request, principal, web)
    now = web.clock()
    try:
        org = desk.organisation(web.config, org_id or None)
        wanted = desk.requirements(",".join(require or ()))
        asked, message = desk.ask(
            org, address, purpose, wanted, timedelta(days=valid_days), now=now, client="console"
        )
    except desk.ContactError as error:
        return await _render(request, principal, web, refused=error)
    await web.db(web.contacts.register.add, asked)
    await web.contacts.enqueue(message)
    return RedirectResponse(request.url_for("console_contacts"), status_code=303)


@router.post("/{ident}/revoke", dependencies=CHECKED, response_model=None)
async def revoke(request: Request, principal: Operator, web: Web, ident: str) -> Response:
    """Stop relying on a verification (the holder is not told)."""
    if web.contacts is None:
        return await _render(request, principal, web)
    try:
        await web.db(desk.revoke, web.contacts.register, ident)
    except desk.ContactError as error:
        return await _render(request, principal, web, refused=error)
    return RedirectResponse(request.url_for("console_contacts"), status_code=303)
