"""The console's records requests: Privacy Act (subject) and OIA (query) exports.

``/console/records`` lists past exports (from the records log) and offers a form; the POST
writes the bundle with :func:`securemail.records.export.export`, the same as ``securemail
records export``, into ``exports/`` in the node's ``data_dir`` and nowhere else. Only an
operator whose session carries the records role (``securemail user records-role NAME
on``) reaches these pages; every other principal gets 403.

Security: the subject, query and dates come from the browser; they go to the export as
values (bound parameters there) and back into pages only through autoescaping. The
destination is fixed by the node, never taken from the request, and checked against the
node's storage before anything is written. The form carries the session's CSRF token.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from securemail.access.model import Principal
from securemail.errors import SecureMailError
from securemail.records.errors import RecordsError, RecordsReason
from securemail.records.export import (
    Bundle,
    RecordsRequest,
    check_destination,
    export,
    past_exports,
)
from securemail.smime import SignerIdentity
from securemail.web.auth import csrf_protect, operator
from securemail.web.console import pages
from securemail.web.context import WebContext, web_context

KINDS = ("subject", "query")
SHOWN = 50  # past exports listed; the caption says when there may be more


async def records_officer(principal: Annotated[Principal, Depends(operator)]) -> Principal:
    """The signed-in operator if the records role is theirs; 403 otherwise."""
    if not principal.records:
        raise HTTPException(403, "the records role is needed")
    return principal


router = APIRouter(prefix="/console/records", dependencies=[Depends(records_officer)])
Officer = Annotated[Principal, Depends(records_officer)]
Web = Annotated[WebContext, Depends(web_context)]


def _day(value: str, *, end: bool) -> datetime | None:
    """A form's YYYY-MM-DD as UTC; ``end`` takes the day's last moment."""
    if not value.strip():
        return None
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        detail = f"{value.strip()!r} is not a date (YYYY-MM-DD)"
        raise RecordsError(RecordsReason.BAD_REQUEST, detail) from None
    return day + timedelta(days=1, microseconds=-1) if end else day


async def _page(
    request: Request,
    principal: Principal,
    web: WebContext,
    extra: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    done = await web.db(past_exports, web.accounts.engine, limit=SHOWN)
    values: dict[str, Any] = {"principal": principal, "csrf": principal.csrf, "kinds": KINDS}
    values |= {"exports": done, "shown": SHOWN}
    values |= {"form": {"kind": "subject", "about": "", "start": "", "end": ""}} | extra
    return pages.TemplateResponse(request, "console/records.html", values, status_code=status)


@router.get("", response_class=HTMLResponse, name="console_records")
async def records_page(request: Request, principal: Officer, web: Web) -> HTMLResponse:
    return await _page(request, principal, web, {})


@router.post("", dependencies=[Depends(csrf_protect)], response_class=HTMLResponse)
async def make_export(
    request: Request,
    principal: Officer,
    web: Web,
    *,
    kind: Annotated[str, Form()] = "subject",
    about: Annotated[str, Form()] = "",
    start: Annotated[str, Form()] = "",
    end: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Write the bundle into the node's storage; the page names it, or the refusal."""
    form = {"kind": kind, "about": about, "start": start, "end": end}
    try:
        bundle = await web.db(_export, web, form, principal)
    except RecordsError as error:
        context = {"refused": error, "form": form}
        return await _page(request, principal, web, context, status=400)
    return await _page(request, principal, web, {"made": bundle, "form": form}, status=201)


def _signer(web: WebContext) -> SignerIdentity:
    if web.records_signer is None:
        raise RecordsError(RecordsReason.NO_SIGNER, "this console has no signing key")
    try:
        return web.records_signer()
    except (SecureMailError, OSError, ValueError) as error:
        detail = f"the node's key could not be loaded: {error}"
        raise RecordsError(RecordsReason.NO_SIGNER, detail) from None


def _export(web: WebContext, form: dict[str, str], principal: Principal) -> Bundle:
    kind, about = form["kind"], form["about"].strip()
    if kind not in KINDS:
        raise RecordsError(RecordsReason.BAD_REQUEST, "choose a Privacy Act or an OIA request")
    signer = _signer(web)
    request = RecordsRequest(
        subject=about if kind == "subject" else None,
        query=about if kind == "query" else None,
        start=_day(form["start"], end=False),
        end=_day(form["end"], end=True),
    )
    request.check()
    destination = web.config.data_dir / "exports"
    check_destination(destination, web.config.data_dir, outside=False)
    by = f"console:{principal.account.name}"
    return export(
        web.accounts.engine,
        request,
        destination,
        signer=signer,
        node=web.config.name,
        now=web.clock(),
        by=by,
    )
