"""The operator console: the node's status, queue, quarantine, directory, keys, lockouts and
the conformance of member gateways.

Server-rendered pages under ``/console``; every page needs an operator's session, every
change is a POST form behind ``csrf_protect``. What the pages show and do comes from
:mod:`securemail.operations`, the layer the CLI uses too.

Security: entry ids, filters and lock keys come from the browser: they go to the service
layer as values (bound parameters there) and back into pages only through Jinja2's
autoescaping. An entry's page shows its header block, never its body. Refusals (unknown
entry, evidence without "force", wrong state) are shown as their reason code and detail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator

from securemail import bulk, operations
from securemail.access.model import Principal
from securemail.conformance.history import ConformanceHistory
from securemail.conformance.report import report_page
from securemail.errors import SecureMailError
from securemail.queue import Direction, State
from securemail.records.access import opened
from securemail.web.auth import csrf_protect, operator
from securemail.web.context import WebContext, web_context

pages = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(prefix="/console", dependencies=[Depends(operator)])
Operator = Annotated[Principal, Depends(operator)]
Web = Annotated[WebContext, Depends(web_context)]
CHECKED = [Depends(csrf_protect)]
ACTIONS = ("hold", "release", "retry", "delete")


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


# The filter form's "any" option sends an empty value: it means no filter, not a bad one.
AnyState = Annotated[State | None, BeforeValidator(_blank_is_none)]
AnyDirection = Annotated[Direction | None, BeforeValidator(_blank_is_none)]


def _page(
    request: Request, principal: Principal, name: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    values = {"principal": principal, "csrf": principal.csrf, "states": list(State)} | context
    return pages.TemplateResponse(request, f"console/{name}", values, status_code=status)


@router.get("/", response_class=HTMLResponse, name="console_status")
async def status_page(request: Request, principal: Operator, web: Web) -> HTMLResponse:
    now = web.clock()
    status = await web.db(operations.node_status, web.config, web.store, web.directory(), now)
    return _page(request, principal, "status.html", {"status": status, "now": now})


@router.get("/queue", response_class=HTMLResponse, name="console_queue")
async def queue_page(
    request: Request,
    principal: Operator,
    web: Web,
    *,
    state: AnyState = None,
    direction: AnyDirection = None,
    reason: str = "",
    text: str = "",
    limit: int = operations.DEFAULT_PAGE,
    offset: int = 0,
    order: str = "newest",
) -> HTMLResponse:
    wanted = operations.QueueFilter(
        states=() if state is None else (state,),
        direction=direction,
        reason=reason.strip() or None,
        text=text.strip() or None,
        **_paging(limit, offset, order),
    )
    page = await web.db(operations.list_entries, web.store, wanted)
    backlog = await web.db(operations.upstream_backlog, web.store)
    held = await web.db(operations.held_for_key, web.store)
    context = {"wanted": wanted, "directions": list(Direction)} | _listing(request, page)
    context |= {"backlog": backlog, "held_for_key": held}
    return _page(request, principal, "queue.html", context)


def _paging(limit: int, offset: int, order: str) -> dict[str, Any]:
    """A page's fields from the query, brought into range (a page never fails to show)."""
    return {
        "limit": max(1, min(limit, operations.MAX_PAGE)),
        "offset": max(0, min(offset, operations.MAX_OFFSET)),
        "oldest_first": order == "oldest",
    }


def _listing(request: Request, page: operations.Page) -> dict[str, Any]:
    """What the templates show of a page: its entries, which ones of how many, and the
    links to the pages before and after it (the filters kept)."""
    before = max(0, page.offset - page.limit) if page.offset else None
    return {
        "entries": page.entries,
        "page": page,
        "previous_url": None
        if before is None
        else str(request.url.include_query_params(offset=before)),
        "next_url": None
        if page.next_offset is None
        else str(request.url.include_query_params(offset=page.next_offset)),
    }


@router.post("/queue/bulk", dependencies=CHECKED, response_class=HTMLResponse, name="console_bulk")
async def steer_entries(
    request: Request,
    principal: Operator,
    web: Web,
    *,
    action: Annotated[str, Form()],
    ids: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies form defaults)
    force: Annotated[bool, Form()] = False,
    dry_run: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    """The selected entries, steered (or, for a preview, what would change): the same
    :mod:`securemail.bulk` as ``securemail queue hold ID…``; a delivered entry is never
    held or retried, and the page says so for each one."""
    if action not in ACTIONS:
        return _page(request, principal, "missing.html", {"entry_id": action}, status=404)
    if not ids:
        nothing = bulk.BulkError(bulk.BulkReason.EMPTY_SELECTION, "tick at least one entry")
        return _page(request, principal, "bulk.html", {"report": None, "refused": nothing}, 409)
    selection = bulk.Selection(ids=tuple(dict.fromkeys(ids))[: operations.MAX_PAGE])
    chosen = bulk.Action(action)
    try:
        report = await web.db(
            bulk.steer, web.store, chosen, selection, web.clock(), dry_run=dry_run, force=force
        )
    except SecureMailError as error:
        return _page(request, principal, "bulk.html", {"report": None, "refused": error}, 409)
    context = {"report": report, "force": force}
    return _page(request, principal, "bulk.html", context, status=409 if report.refused else 200)


@router.get("/queue/{entry_id}", response_class=HTMLResponse, name="console_entry")
async def entry_page(
    request: Request, principal: Operator, web: Web, entry_id: str
) -> HTMLResponse:
    return await _entry_page(request, principal, web, entry_id)


async def _entry_page(
    request: Request,
    principal: Principal,
    web: WebContext,
    entry_id: str,
    refused: SecureMailError[Any] | None = None,
) -> HTMLResponse:
    try:
        detail = await web.db(operations.entry_detail, web.store, entry_id)
    except SecureMailError as error:
        context = {"entry_id": entry_id, "refused": error}
        return _page(request, principal, "missing.html", context, status=404)
    by = principal.account.name
    await web.db(opened, web.accounts.engine, detail.entry, by=by, via="console", now=web.clock())
    context = {
        "detail": detail,
        "refused": refused,
        "actions": operations.actions_for(detail.entry),
    }
    return _page(request, principal, "entry.html", context, status=409 if refused else 200)


@router.post("/queue/{entry_id}/{action}", dependencies=CHECKED, response_model=None)
async def steer_entry(
    request: Request,
    principal: Operator,
    web: Web,
    entry_id: str,
    action: str,
    *,
    force: Annotated[bool, Form()] = False,
) -> Response:
    if action not in ACTIONS:
        return _page(request, principal, "missing.html", {"entry_id": entry_id}, status=404)
    try:
        if action == "delete":
            await web.db(operations.delete, web.store, entry_id, web.clock(), force=force)
            return RedirectResponse(request.url_for("console_queue"), status_code=303)
        await web.db(getattr(operations, action), web.store, entry_id, web.clock())
    except SecureMailError as error:
        return await _entry_page(request, principal, web, entry_id, refused=error)
    return RedirectResponse(request.url_for("console_entry", entry_id=entry_id), status_code=303)


@router.get("/quarantine", response_class=HTMLResponse, name="console_quarantine")
async def quarantine_page(
    request: Request,
    principal: Operator,
    web: Web,
    *,
    limit: int = operations.DEFAULT_PAGE,
    offset: int = 0,
    order: str = "newest",
) -> HTMLResponse:
    wanted = operations.QueueFilter(**_paging(limit, offset, order))
    page = await web.db(operations.quarantine, web.store, wanted)
    context = {"title": "Quarantine", "empty": "Nothing is quarantined."}
    return _page(request, principal, "entries.html", context | _listing(request, page))


@router.get("/failures", response_class=HTMLResponse, name="console_failures")
async def failures_page(
    request: Request,
    principal: Operator,
    web: Web,
    *,
    hours: int = 24,
    limit: int = operations.DEFAULT_PAGE,
    offset: int = 0,
    order: str = "newest",
) -> HTMLResponse:
    hours = max(1, min(hours, 24 * 90))
    wanted = operations.QueueFilter(**_paging(limit, offset, order))
    page = await web.db(operations.recent_failures, web.store, web.clock(), hours, wanted)
    title = f"Failures in the last {hours} hours"
    context = {"title": title, "empty": "No failures.", "hours": hours}
    return _page(request, principal, "entries.html", context | _listing(request, page))


@router.get("/directory", response_class=HTMLResponse, name="console_directory")
async def directory_page(request: Request, principal: Operator, web: Web) -> HTMLResponse:
    directory, now = web.directory(), web.clock()
    context = {
        "summary": operations.directory_summary(directory, now),
        "members": operations.directory_members(directory, now),
    }
    return _page(request, principal, "directory.html", context)


@router.get("/keys", response_class=HTMLResponse, name="console_keys")
async def keys_page(request: Request, principal: Operator, web: Web) -> HTMLResponse:
    orgs = await web.db(operations.node_keys, web.config, web.clock())
    return _page(request, principal, "keys.html", {"orgs": orgs})


@router.get("/lockouts", response_class=HTMLResponse, name="console_lockouts")
async def lockouts_page(request: Request, principal: Operator, web: Web) -> HTMLResponse:
    return await _lockouts_page(request, principal, web)


async def _lockouts_page(
    request: Request,
    principal: Principal,
    web: WebContext,
    refused: SecureMailError[Any] | None = None,
) -> HTMLResponse:
    locks = await web.db(operations.lockouts, web.accounts.engine, web.clock())
    context = {"locks": locks, "refused": refused}
    return _page(request, principal, "lockouts.html", context, status=409 if refused else 200)


@router.post("/lockouts/unlock", dependencies=CHECKED, response_model=None)
async def unlock(
    request: Request,
    principal: Operator,
    web: Web,
    scope: Annotated[str, Form()],
    key: Annotated[str, Form()],
) -> Response:
    try:
        await web.db(operations.unlock, web.accounts.engine, web.accounts.service, scope, key)
    except SecureMailError as error:
        return await _lockouts_page(request, principal, web, refused=error)
    return RedirectResponse(request.url_for("console_lockouts"), status_code=303)


@router.get("/conformance", response_class=HTMLResponse, name="console_conformance")
async def conformance_page(
    request: Request,
    principal: Operator,
    web: Web,
    *,
    member: str = "",
    limit: int = 50,
    offset: int = 0,
) -> HTMLResponse:
    """Each member's latest conformance result, regressions first in an alert, and the
    history of runs (of one member, with ``member``), paged."""
    history = ConformanceHistory(web.accounts.engine)
    paging = _paging(limit, offset, "newest")
    wanted = member.strip() or None
    latest = await web.db(history.latest)
    runs = await web.db(history.runs, wanted, limit=paging["limit"] + 1, offset=paging["offset"])
    more = len(runs) > paging["limit"]
    before = max(0, paging["offset"] - paging["limit"]) if paging["offset"] else None
    context = {
        "latest": latest,
        "regressed": [r for r in latest if r.regressed],
        "runs": runs[: paging["limit"]],
        "member": wanted or "",
        "limit": paging["limit"],
        "previous_url": None
        if before is None
        else str(request.url.include_query_params(offset=before)),
        "next_url": str(request.url.include_query_params(offset=paging["offset"] + paging["limit"]))
        if more
        else None,
    }
    return _page(request, principal, "conformance.html", context)


@router.get("/conformance/{result_id}", response_class=HTMLResponse, name="console_report")
async def conformance_report(principal: Operator, web: Web, result_id: str) -> Response:
    """One run's signed report as its readable page (the JSON and signature are in the
    history; ``securemail conformance history --json`` names the run ids)."""
    kept = await web.db(ConformanceHistory(web.accounts.engine).report, result_id)
    if kept is None:
        return HTMLResponse("<!DOCTYPE html><title>Not found</title><p>No such run.</p>", 404)
    return HTMLResponse(report_page(kept[0]))
