"""The webmail pages under /mail: folders, the message list, reading with the verification
panel, attachments, move and delete, compose, and the evidence of mail sent.

Security: everything in a request is untrusted: folder and message names are looked up by
listing (:mod:`securemail.web.maildir_view`), never joined into paths; every page needs a
session (``signed_in``) and every POST ``csrf_protect``; a principal only ever reaches the
Maildir of its own primary address and the queue entries it submitted. HTML mail is
sanitised and framed (:mod:`securemail.web.sanitise`); attachments download as
``attachment`` with ``nosniff``. Composed mail enters the queue through the same ``admit``
as submission, as listener "submission" with the account as ``auth_user``, after the
routing policy said every recipient may receive it.
"""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from securemail.access.model import Principal
from securemail.accounts.assurance import Submitted
from securemail.config.anchors import load_anchors
from securemail.receive.message import trace_field
from securemail.receive.model import Received
from securemail.smime.labels import CLASSIFICATIONS
from securemail.structured import message as structured_message
from securemail.structured.view import DocumentView
from securemail.structured.view import view as document_view
from securemail.web import maildir_view as maildir
from securemail.web import timeline
from securemail.web.app import render
from securemail.web.auth import csrf_protect, signed_in
from securemail.web.compose import (
    MAX_ATTACHMENTS,
    PRIVACY_MARKS,
    Composed,
    ComposeError,
    Draft,
    Reach,
    Upload,
    answer,
    build,
    label_of,
    reach,
    recipients,
    reopen,
    split_addresses,
)
from securemail.web.context import WebContext, web_context
from securemail.web.listing import SORTS, list_rows, search_rows
from securemail.web.reading import attachment, take_apart
from securemail.web.sanitise import frame_document
from securemail.web.verification import author_of, judge, own_copy

router = APIRouter(prefix="/mail", tags=["webmail"])
Who = Annotated[Principal, Depends(signed_in)]
Web = Annotated[WebContext, Depends(web_context)]
Checked = Depends(csrf_protect)
_MAX_QUERY = 200
_MAX_UPLOADS = 10


def _root(web: WebContext, who: Principal) -> Path:
    """The account's Maildir, with its special-use folders (made when missing)."""
    root = web.maildir_for(who.account.primary)
    if root is None:
        raise HTTPException(404, "this account has no mailbox on this node")
    maildir.prepare(root)
    return root


def _folder(root: Path, name: str) -> maildir.Folder:
    found = maildir.folder(root, name)
    if found is None:
        raise HTTPException(404, "no such folder")
    return found


def _message(where: maildir.Folder, key: str) -> maildir.Stored:
    found = maildir.find(where, key)
    if found is None:
        raise HTTPException(404, "no such message")
    return found


@router.get("", name="mail_list")
async def list_page(
    request: Request,
    who: Who,
    web: Web,
    *,
    folder: str = maildir.INBOX,
    sort: str = "newest",
    q: Annotated[str, Query(max_length=_MAX_QUERY)] = "",
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    """The folder list and one page of the messages of one folder (or those matching ``q``
    among its newest :data:`~securemail.web.maildir_view.MAX_LISTED`)."""
    root = _root(web, who)
    where = _folder(root, folder)
    directory = web.directory()
    sealing = _sealing(web, who)
    paging: dict[str, object] = {}
    if q.strip():
        rows = await asyncio.to_thread(
            search_rows,
            where,
            q.strip(),
            node_name=web.config.name,
            directory=directory,
            sealing=sealing,
        )
    else:
        rows, total = await asyncio.to_thread(
            list_rows,
            where,
            node_name=web.config.name,
            directory=directory,
            sealing=sealing,
            sort=sort if sort in SORTS else "newest",
            offset=offset,
        )
        paging = _paging(request, offset, len(rows), total)
    context = {
        "folders": maildir.folders(root),
        "folder": where,
        "rows": rows,
        "sort": sort if sort in SORTS else "newest",
        "sorts": SORTS,
        "q": q,
        "to_column": where.name in (maildir.SENT, maildir.DRAFTS),
    } | paging
    return render(request, "mail/list.html", context)


@router.get("/read", name="mail_read")
async def read_page(request: Request, who: Who, web: Web, folder: str, key: str) -> Response:
    """One message with its verification panel; reading marks it seen."""
    root = _root(web, who)
    where = _folder(root, folder)
    stored = _message(where, key)
    try:
        data = await asyncio.to_thread(maildir.read, stored)
    except maildir.MessageTooLargeError:
        raise HTTPException(413, "this message is too large to show here") from None
    await asyncio.to_thread(maildir.mark_seen, where, stored)
    reading = take_apart(data)
    verdict = judge(
        reading.fields,
        node_name=web.config.name,
        origin=web.seal.origin_of(who.account.primary, data),
        keywords=stored.keywords,
        directory=web.directory(),
        received=_arrival(stored),
    )
    sent = None
    if reading.message_id and who.account.owns(author_of(reading.fields) or ""):
        sent = await web.db(timeline.timeline, web.store, reading.message_id, who.account.name)
    if sent is not None:
        verdict = own_copy(verdict)
    context = {
        "folders": maildir.folders(root),
        "folder": where,
        "key": stored.key,
        "reading": reading,
        "verdict": verdict,
        "frame": frame_document(reading.html) if reading.html is not None else None,
        "timeline": sent,
        "document": await asyncio.to_thread(_document_view, data),
    }
    return render(request, "mail/read.html", context)


def _document_view(data: bytes) -> DocumentView | None:
    """The readable form of the message's structured document, if it carries one."""
    found = structured_message.find(data) if structured_message.declares(data) else None
    return None if found is None else document_view(found.document)


def _paging(request: Request, offset: int, shown: int, total: int) -> dict[str, object]:
    """Which messages of how many a page shows, and the links before and after it."""
    after = offset + shown
    return {
        "first": offset + 1,
        "last": after,
        "total": total,
        "newer_url": str(request.url.include_query_params(offset=max(0, offset - maildir.PAGE)))
        if offset
        else None,
        "older_url": str(request.url.include_query_params(offset=after)) if after < total else None,
    }


def _sealing(web: WebContext, who: Principal) -> maildir.Sealing:
    """How the gateway's seal is checked, and the Sent copy sealed, in ``who``'s mailbox."""
    return maildir.Sealing(web.seal, who.account.primary)


def _arrival(stored: maildir.Stored) -> datetime:
    """When the message was stored: the file's time, which Maildir readers take as arrival."""
    return datetime.fromtimestamp(stored.mtime, UTC)


@router.get("/attachment", name="mail_attachment")
async def attachment_download(
    who: Who, web: Web, folder: str, key: str, part: Annotated[int, Query(ge=0)]
) -> Response:
    """One attachment, always as a download (never rendered by the browser)."""
    stored = _message(_folder(_root(web, who), folder), key)
    try:
        data = await asyncio.to_thread(maildir.read, stored)
    except maildir.MessageTooLargeError:
        raise HTTPException(413, "this message is too large") from None
    found = attachment(data, part)
    if found is None:
        raise HTTPException(404, "no such attachment")
    described, content = found
    headers = {
        "Content-Disposition": f'attachment; filename="{described.filename}"',
        "X-Content-Type-Options": "nosniff",
    }
    return Response(content, media_type="application/octet-stream", headers=headers)


@router.post("/move", name="mail_move", dependencies=[Checked])
async def move_message(request: Request, who: Who, web: Web) -> Response:
    """Move a message to another existing folder."""
    form = await request.form()
    root = _root(web, who)
    where = _folder(root, str(form.get("folder", "")))
    stored = _message(where, str(form.get("key", "")))
    destination = _folder(root, str(form.get("to", "")))
    await asyncio.to_thread(maildir.move, where, stored, destination)
    return _back_to(where)


@router.post("/delete", name="mail_delete", dependencies=[Checked])
async def delete_message(request: Request, who: Who, web: Web) -> Response:
    """Move a message to Trash (created if missing); nothing is destroyed here."""
    form = await request.form()
    root = _root(web, who)
    where = _folder(root, str(form.get("folder", "")))
    stored = _message(where, str(form.get("key", "")))
    trash = await asyncio.to_thread(maildir.ensure_folder, root, maildir.TRASH)
    await asyncio.to_thread(maildir.move, where, stored, trash)
    return _back_to(where)


def _back_to(where: maildir.Folder) -> Response:
    return RedirectResponse(f"/mail?{urlencode({'folder': where.name})}", status_code=303)


@router.get("/evidence", name="mail_evidence")
async def evidence_download(who: Who, web: Web, message_id: str) -> Response:
    """The evidence bundle (ZIP) of a message this account sent, once receipts came back."""
    directory = web.directory()
    crls = directory.crls if directory is not None else ()
    anchors = load_anchors(web.config.anchor)
    bundle = await web.db(
        timeline.evidence_zip,
        web.store,
        message_id,
        who.account.name,
        anchors=anchors,
        crls=crls,
    )
    if bundle is None:
        raise HTTPException(404, "no receipt has come back for this message yet")
    headers = {
        "Content-Disposition": 'attachment; filename="evidence.zip"',
        "X-Content-Type-Options": "nosniff",
    }
    return Response(bundle, media_type="application/zip", headers=headers)


@router.get("/compose", name="mail_compose")
async def compose_page(
    request: Request, who: Who, web: Web, *, folder: str = "", key: str = "", mode: str = ""
) -> Response:
    """The compose form, empty, as a reply to / forward of a stored message, or a draft
    from the Drafts folder (``mode=draft``) to finish."""
    draft = Draft(sender=who.account.primary, to=(), cc=(), subject="", body="")
    draft_key = ""
    if folder and key and mode in ("reply", "forward", "draft"):
        where = _folder(_root(web, who), maildir.DRAFTS if mode == "draft" else folder)
        stored = _message(where, key)
        reading = take_apart(await asyncio.to_thread(maildir.read, stored))
        if mode == "draft":
            draft, draft_key = reopen(reading, draft), stored.key
        else:
            draft = answer(reading, draft, forward=mode == "forward")
    notice = "Draft saved in Drafts." if request.query_params.get("saved") else None
    return _compose_form(request, web, who, draft, draft_key=draft_key, notice=notice)


@router.post("/compose", name="mail_send", dependencies=[Checked])
async def compose_send(request: Request, who: Who, web: Web) -> Response:
    """Check the recipients (action "check"), save to Drafts ("draft") or send: admit to
    the queue, copy to Sent (sealed), drop the draft it came from, show the confirmation."""
    form = await request.form()
    draft = await _draft(form, who)
    draft_key = str(form.get("draft", ""))
    if form.get("action") == "draft":
        return await _save_draft(request, web, who, draft, draft_key)
    try:
        reaches = _reach(web, draft)
    except ComposeError as error:
        return _compose_form(
            request, web, who, draft, error=error.detail, status=400, draft_key=draft_key
        )
    refused = [r for r in reaches if not r.allowed]
    if form.get("action") != "send" or refused:
        problem = "; ".join(f"{r.address}: {r.explanation}" for r in refused) or None
        status = 400 if refused else 200
        return _compose_form(
            request,
            web,
            who,
            draft,
            reaches=reaches,
            error=problem,
            status=status,
            draft_key=draft_key,
        )
    try:
        composed = build(draft, account=who.account, now=web.clock())
    except ComposeError as error:
        return _compose_form(
            request,
            web,
            who,
            draft,
            reaches=reaches,
            error=error.detail,
            status=400,
            draft_key=draft_key,
        )
    reply = await web.admit(_received(request, web, who, composed))
    if reply.code >= 300:
        problem = f"not sent: {reply.text}"
        return _compose_form(
            request,
            web,
            who,
            draft,
            reaches=reaches,
            error=problem,
            status=503,
            draft_key=draft_key,
        )
    root = _root(web, who)
    sent = await asyncio.to_thread(maildir.ensure_folder, root, maildir.SENT)
    stored_key = await asyncio.to_thread(
        maildir.store, sent, composed.message, seal=_sealing(web, who)
    )
    await asyncio.to_thread(_drop_draft, root, draft_key)
    query = urlencode({"key": stored_key, "message_id": composed.message_id})
    return RedirectResponse(f"/mail/sent?{query}", status_code=303)


@router.get("/sent", name="mail_sent")
async def sent_page(request: Request, who: Who, web: Web, key: str, message_id: str) -> Response:
    """The confirmation after sending: each recipient's delivery state as the queue has it
    now (the timeline the Sent copy's panel shows), and a link to the copy in Sent."""
    root = _root(web, who)
    stored = _message(_folder(root, maildir.SENT), key)
    sent = await web.db(timeline.timeline, web.store, message_id[:250], who.account.name)
    context = {
        "folders": maildir.folders(root),
        "key": stored.key,
        "timeline": sent,
        "refresh": str(request.url),
    }
    return render(request, "mail/sent.html", context)


async def _save_draft(
    request: Request, web: WebContext, who: Principal, draft: Draft, replaced: str
) -> Response:
    """Keep ``draft`` in Drafts (not sealed: it is the person's, not the gateway's) in place
    of the draft it was opened from; back to the form, which now edits the saved one."""
    try:
        composed = build(draft, account=who.account, now=web.clock(), for_drafts=True)
    except ComposeError as error:
        return _compose_form(
            request, web, who, draft, error=error.detail, status=400, draft_key=replaced
        )
    root = _root(web, who)
    drafts = await asyncio.to_thread(maildir.ensure_folder, root, maildir.DRAFTS)
    key = await asyncio.to_thread(maildir.store, drafts, composed.message, flags="DS")
    await asyncio.to_thread(_drop_draft, root, replaced)
    query = urlencode({"folder": maildir.DRAFTS, "key": key, "mode": "draft", "saved": "1"})
    return RedirectResponse(f"/mail/compose?{query}", status_code=303)


def _drop_draft(root: Path, key: str) -> None:
    """Delete the draft ``key`` from Drafts, if there is one (it was sent or saved anew)."""
    if not key:
        return
    drafts = maildir.folder(root, maildir.DRAFTS)
    stored = maildir.find(drafts, key) if drafts is not None else None
    if stored is not None:
        stored.path.unlink(missing_ok=True)


def _received(request: Request, web: WebContext, who: Principal, composed: Composed) -> Received:
    """The composed message as the submission listener would have received it."""
    ip = request.client.host if request.client is not None else ""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        ip = "0.0.0.0"  # noqa: S104 (written in the trace, never bound): no peer address: a Unix socket or an in-process transport
    trace = trace_field("webmail", ip, web.config.name, "HTTPS", web.clock())
    return Received(
        listener="submission",
        client_address=ip,
        helo="webmail",
        mail_from=composed.sender,
        recipients=composed.recipients,
        body=trace + composed.message,
        tls=request.url.scheme == "https",
        tls_version=None,
        auth_user=who.account.name,
        assurance=_assurance(who),
    )


def _assurance(who: Principal) -> Submitted | None:
    """How the sender logged in to the webmail: a session's method (an API token is no
    login of the holder's: nothing is vouched for)."""
    if who.method == "password+totp":
        return Submitted.of(who.account, "password-totp")
    if who.method == "password":
        return Submitted.of(who.account, "password")
    return None


def _reach(web: WebContext, draft: Draft) -> list[Reach]:
    everyone = tuple(
        dict.fromkeys(recipients(draft.to) + recipients(draft.cc) + recipients(draft.bcc))
    )
    organisation = web.config.organisation_for(draft.sender.rpartition("@")[2])
    organisation = organisation or web.config.organisations[0]
    return reach(
        everyone,
        sender_org=organisation.org_id,
        directory=web.directory(),
        smarthost=web.config.smarthost is not None,
        now=web.clock(),
        label=label_of(draft),
        org_policy=organisation.policy,
        node_policy=web.config.node_policy,
    )


async def _draft(form: FormData, who: Principal) -> Draft:
    uploads = []
    for item in form.getlist("attachments")[:_MAX_UPLOADS]:
        if isinstance(item, UploadFile) and item.filename:
            content = await item.read(MAX_ATTACHMENTS + 1)
            uploads.append(Upload(item.filename, item.content_type or "", content))
    return Draft(
        sender=str(form.get("sender", who.account.primary)),
        to=_field(form, "to"),
        cc=_field(form, "cc"),
        bcc=_field(form, "bcc"),
        subject=str(form.get("subject", "")),
        body=str(form.get("body", "")),
        classification=str(form.get("classification", "")),
        privacy=str(form.get("privacy", "")),
        receipt=form.get("receipt") == "yes",
        attachments=tuple(uploads),
        in_reply_to=str(form.get("in_reply_to", "")),
    )


def _field(form: FormData, name: str) -> tuple[str, ...]:
    """The addresses of one recipients field (several boxes of the same name are joined)."""
    return tuple(a for value in form.getlist(name) for a in split_addresses(str(value)))


def _compose_form(
    request: Request,
    web: WebContext,
    who: Principal,
    draft: Draft,
    *,
    reaches: list[Reach] | None = None,
    error: str | None = None,
    status: int = 200,
    draft_key: str = "",
    notice: str | None = None,
) -> Response:
    context = {
        "folders": maildir.folders(_root(web, who)),
        "draft": draft,
        "draft_key": draft_key,
        "notice": notice,
        "senders": who.account.addresses,
        "classifications": tuple(CLASSIFICATIONS),
        "privacy_marks": PRIVACY_MARKS,
        "reaches": reaches,
        "error": error,
    }
    response = render(request, "mail/compose.html", context)
    response.status_code = status
    return response
