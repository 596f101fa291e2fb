"""The JSON API for business applications: send a structured document, track it.

``POST /api/v1/structured`` takes ``{"to", "document", "in_reply_to"?, "receipt"?}`` with
a token of scope ``application``; the document is validated before anything is queued
(422 with the rule ids if it fails) and sent from the token's account as a SecureMail
message (:mod:`securemail.structured.message`). ``GET /api/v1/structured/{message_id}``
is its timeline, with the business answer once one came back.

Security: the document is untrusted (see :mod:`securemail.structured.documents`); From:
is only ever one of the account's own addresses; the routing policy is asked per recipient
before the message is admitted, exactly as for the webmail.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from securemail.access.model import Principal, Scope
from securemail.receive import Received
from securemail.receive.message import trace_field
from securemail.structured.documents import parse, text
from securemail.structured.inbox import PullInbox
from securemail.structured.message import Outgoing, compose
from securemail.structured.schema import installed
from securemail.structured.validate import validate
from securemail.web.api import ERRORS, ApiError, RequestBody, TrackOut, Web, scoped, tracks_of
from securemail.web.compose import reach

router = APIRouter(prefix="/api/v1")
ApplicationToken = Annotated[Principal, scoped(Scope.APPLICATION)]
MAX_DOCUMENT_TEXT = 10 * 2**20


class DocumentIn(RequestBody):
    to: str = Field(max_length=254)
    document: str = Field(max_length=MAX_DOCUMENT_TEXT)
    sender: str | None = Field(None, max_length=254, description="one of the account's addresses")
    in_reply_to: str | None = Field(None, max_length=250)
    receipt: bool = True
    subject: str | None = Field(None, max_length=200)


class SentOut(BaseModel):
    message_id: str
    document_type: str
    document_id: str
    validation: dict[str, Any]
    queued: str


@router.post("/structured", response_model=SentOut, status_code=202, responses=ERRORS | {422: {}})
async def send_structured(
    request: Request, principal: ApplicationToken, web: Web, sent: DocumentIn
) -> SentOut | JSONResponse:
    """Validate the document; refuse it with its rule ids (422), or queue it (202)."""
    account = principal.account
    sender = sent.sender or account.addresses[0]
    if not account.owns(sender):
        raise ApiError(403, "from-not-owned", "sender must be one of the account's addresses")
    data = sent.document.encode("utf-8")
    report = await asyncio.to_thread(validate, data, installed(web.config.structured.ubl_schemas))
    if not report.valid or report.document_type is None:
        body = {"error": "structured-invalid", "detail": ", ".join(report.rules)}
        return JSONResponse(body | report.as_json(), status_code=422)
    _check_route(web, sender, sent.to)
    document_id = text(parse(data), "cbc:ID")
    kind = report.document_type.kind.value.replace("-", " ")
    outgoing = Outgoing(
        data, report.document_type, document_id, sender, sent.to,
        sent.subject or f"{kind.capitalize()} {document_id}", sent.receipt, sent.in_reply_to,
    )  # fmt: skip
    message, message_id = compose(outgoing, web.clock())
    reply = await web.admit(
        _received(request, web, principal, sender=sender, to=sent.to, message=message)
    )
    if reply.code >= 300:
        status = 422 if reply.code >= 500 else 503
        raise ApiError(status, reply.reason or "not-queued", reply.detail or reply.text)
    return SentOut(
        message_id=message_id,
        document_type=report.document_type.identifier,
        document_id=document_id,
        validation=report.as_json(),
        queued=reply.text,
    )


def _check_route(web: Web, sender: str, recipient: str) -> None:
    organisation = web.config.organisation_for(sender.rpartition("@")[2])
    organisation = organisation or web.config.organisations[0]
    (found,) = reach(
        (recipient,),
        sender_org=organisation.org_id,
        directory=web.directory(),
        smarthost=web.config.smarthost is not None,
        now=web.clock(),
        label=None,
        org_policy=organisation.policy,
        node_policy=web.config.node_policy,
    )
    if not found.allowed or not found.member:
        raise ApiError(409, "not-a-member", f"{recipient}: {found.explanation}")


def _received(
    request: Request, web: Web, principal: Principal, *, sender: str, to: str, message: bytes
) -> Received:
    ip = request.client.host if request.client is not None else "127.0.0.1"
    trace = trace_field("api", ip, web.config.name, "HTTPS", web.clock())
    return Received(
        listener="submission",
        client_address=ip,
        helo="api",
        mail_from=sender,
        recipients=(to,),
        body=trace + message,
        tls=request.url.scheme == "https",
        tls_version=None,
        auth_user=principal.account.name,
    )


class InboxOut(BaseModel):
    """Documents waiting for the application (the envelopes of docs/structured.md, each
    with its ``key``), oldest first, at most 100."""

    documents: list[dict[str, Any]]


@router.get("/structured/inbox", response_model=InboxOut, responses=ERRORS)
async def inbox(principal: ApplicationToken, web: Web, limit: int = 100) -> InboxOut:
    """The pull queue of the token's organisation (``[organisation.structured] kind = "pull"``)."""
    found = await web.db(_inbox(web).waiting, _org_of(web, principal), max(1, limit))
    return InboxOut(documents=found)


@router.post("/structured/inbox/{key}/taken", responses=ERRORS)
async def taken(principal: ApplicationToken, web: Web, key: str) -> dict[str, bool]:
    """The application has the document: it leaves the pull queue."""
    if not await web.db(_inbox(web).take, _org_of(web, principal), key, web.clock()):
        raise ApiError(404, "not-waiting", f"no document {key} waits for your organisation")
    return {"taken": True}


def _inbox(web: Web) -> PullInbox:
    if web.inbox is None:
        raise ApiError(404, "no-pull-queue", "this node keeps no pull queue")
    return web.inbox


def _org_of(web: Web, principal: Principal) -> str:
    domain = principal.account.primary.rpartition("@")[2]
    organisation = web.config.organisation_for(domain)
    if organisation is None or organisation.structured is None:
        raise ApiError(404, "no-pull-queue", "your organisation takes documents another way")
    if organisation.structured.kind != "pull":
        raise ApiError(404, "no-pull-queue", "your organisation takes documents another way")
    return organisation.org_id


# Last: its path would otherwise take /structured/inbox as a Message-ID.
@router.get("/structured/{message_id}", response_model=list[TrackOut], responses=ERRORS)
async def track_structured(
    principal: ApplicationToken, web: Web, message_id: str
) -> list[TrackOut]:
    """Each recipient's timeline: queued, relayed, receipted, and the business answer."""
    return await tracks_of(web, principal, message_id)
