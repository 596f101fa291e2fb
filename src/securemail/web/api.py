"""The JSON API under ``/api/v1``: the console's operations and a mailbox's own tracking.

Every response has a pydantic model, so the OpenAPI document describes it. Operator
endpoints need a token with ``Scope.OPERATOR``; ``/me`` and ``/track`` need
``Scope.MAILBOX`` and see only the account's own messages. Refusals are JSON
``{"error": reason_code, "detail": ...}`` (register :func:`error_response` for
:class:`ApiError` on the app).

Security: tokens are checked by ``api_principal`` (webcore); ids and message ids reach
the service layer as values. Entry details carry headers, never bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from securemail import operations
from securemail.access.model import Principal, Scope
from securemail.errors import SecureMailError
from securemail.queue import Entry, QueueError, QueueReason
from securemail.records.access import opened
from securemail.web.auth import api_principal
from securemail.web.context import WebContext, web_context

router = APIRouter(prefix="/api/v1")
Web = Annotated[WebContext, Depends(web_context)]
_STATUS = {
    operations.OperationReason.NOT_FOUND: 404,
    operations.OperationReason.NOT_SENT: 404,
    operations.OperationReason.EVIDENCE: 409,
    operations.OperationReason.NOT_LOCKED: 404,
    operations.OperationReason.BAD_SCOPE: 400,
    QueueReason.NOT_FOUND: 404,
    QueueReason.BAD_STATE: 409,
}


class RequestBody(BaseModel):
    """The base of every JSON request body: its text must be Unicode that UTF-8 can carry.

    JSON allows ``"\\ud800"``, a lone surrogate, and Python's decoder passes it through;
    nothing downstream can encode it (a message, a queue row, a canonical record, a log
    line), so it is refused here as a bad request rather than failing later as a 500.
    """

    @model_validator(mode="after")
    def _encodable(self) -> RequestBody:
        for name, value in self:
            texts = value if isinstance(value, list) else [value]
            if any(isinstance(text, str) and not _utf8(text) for text in texts):
                raise ValueError(f"{name}: not UTF-8 text (a lone surrogate)")
        return self


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class ErrorBody(BaseModel):
    error: str
    detail: str


def error_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)  # noqa: S101 (registered for ApiError only)
    return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status)


def refused(error: SecureMailError[operations.OperationReason] | QueueError) -> ApiError:
    return ApiError(_STATUS.get(error.reason, 409), error.reason.value, error.detail)


def scoped(scope: Scope) -> object:
    def check(principal: Annotated[Principal, Depends(api_principal)]) -> Principal:
        if scope not in principal.scopes:
            raise ApiError(403, "scope-missing", f"this token lacks the {scope} scope")
        return principal

    return Depends(check)


OperatorToken = Annotated[Principal, scoped(Scope.OPERATOR)]
MailboxToken = Annotated[Principal, scoped(Scope.MAILBOX)]
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409)
}


class PageQuery(BaseModel):
    """Which page of a listing: ``limit`` entries after ``offset``, newest first by default."""

    limit: int = Field(operations.DEFAULT_PAGE, ge=1, le=operations.MAX_PAGE)
    offset: int = Field(0, ge=0, le=operations.MAX_OFFSET)
    order: Literal["newest", "oldest"] = "newest"

    def wanted(self, **filters: Any) -> operations.QueueFilter:
        oldest = self.order == "oldest"
        return operations.QueueFilter(
            limit=self.limit, offset=self.offset, oldest_first=oldest, **filters
        )


Paging = Annotated[PageQuery, Query()]


class RecipientOut(BaseModel):
    address: str
    disposition: str
    receipt: str
    attempts: int
    reason: str | None
    last_reply: str | None


class EntryOut(BaseModel):
    id: str
    state: str
    direction: str
    kind: str
    org_id: str
    mail_from: str
    message_id: str | None
    size: int
    created_at: datetime
    attempts: int
    reason: str | None
    recipients: list[RecipientOut]

    @classmethod
    def of(cls, e: Entry) -> EntryOut:
        people = [
            RecipientOut(
                address=r.address,
                disposition=r.disposition.value,
                receipt=r.receipt_state.value,
                attempts=r.attempts,
                reason=r.reason,
                last_reply=r.last_reply,
            )
            for r in e.recipients
        ]
        return cls(
            id=e.id,
            state=e.state.value,
            direction=e.direction.value,
            kind=e.kind,
            org_id=e.org_id,
            mail_from=e.mail_from,
            message_id=e.message_id,
            size=e.size,
            created_at=e.created_at,
            attempts=e.attempts,
            reason=e.reason,
            recipients=people,
        )


class EntryPage(BaseModel):
    """One page of queue entries and how many match in all."""

    entries: list[EntryOut]
    offset: int
    limit: int
    total: int
    more: bool
    next_offset: int | None

    @classmethod
    def of(cls, page: operations.Page) -> EntryPage:
        return cls(
            entries=[EntryOut.of(e) for e in page.entries],
            offset=page.offset,
            limit=page.limit,
            total=page.total,
            more=page.more,
            next_offset=page.next_offset,
        )


class EventOut(BaseModel):
    time: datetime
    event: str
    recipient: str | None
    reason: str
    detail: str


class EntryDetailOut(BaseModel):
    entry: EntryOut
    headers: list[tuple[str, str]]
    events: list[EventOut]


class StatusOut(BaseModel):
    name: str
    region: str
    directory_serial: int | None
    directory_stale: bool | None
    counts: dict[str, int]


class MeOut(BaseModel):
    name: str
    addresses: list[str]
    scopes: list[str]


class StepOut(BaseModel):
    time: datetime
    what: str
    detail: str


class TrackOut(BaseModel):
    recipient: str
    receipt: str
    timeline: list[StepOut]


@router.get("/status", response_model=StatusOut, responses=ERRORS)
async def status(principal: OperatorToken, web: Web) -> StatusOut:
    now = web.clock()
    found = await web.db(operations.node_status, web.config, web.store, web.directory(), now)
    d = found.directory
    return StatusOut(
        name=found.name,
        region=found.region,
        directory_serial=None if d is None else d.serial,
        directory_stale=None if d is None else d.stale,
        counts={s.value: n for s, n in found.counts.items()},
    )


@router.get("/queue", response_model=EntryPage, responses=ERRORS)
async def queue(principal: OperatorToken, web: Web, paging: Paging, text: str = "") -> EntryPage:
    """Queue entries mentioning ``text`` (all when empty), one page at a time, newest first
    unless ``order=oldest``. ``total`` says how many match; ``more`` and ``next_offset``
    say whether, and from where, to ask for the next page: a listing never stops silently."""
    wanted = paging.wanted(text=text.strip() or None)
    return EntryPage.of(await web.db(operations.list_entries, web.store, wanted))


@router.get("/queue/{entry_id}", response_model=EntryDetailOut, responses=ERRORS)
async def entry(principal: OperatorToken, web: Web, entry_id: str) -> EntryDetailOut:
    try:
        found = await web.db(operations.entry_detail, web.store, entry_id)
    except (operations.OperationError, QueueError) as error:
        raise refused(error) from None
    by = principal.account.name
    await web.db(opened, web.accounts.engine, found.entry, by=by, via="api", now=web.clock())
    events = [EventOut(**vars(ev)) for ev in found.events]
    return EntryDetailOut(
        entry=EntryOut.of(found.entry), headers=list(found.headers), events=events
    )


@router.post("/queue/{entry_id}/{action}", response_model=EntryOut, responses=ERRORS)
async def steer(
    principal: OperatorToken, web: Web, entry_id: str, action: Literal["hold", "release", "retry"]
) -> EntryOut:
    try:
        changed = await web.db(getattr(operations, action), web.store, entry_id, web.clock())
    except (operations.OperationError, QueueError) as error:
        raise refused(error) from None
    return EntryOut.of(changed)


@router.get("/me", response_model=MeOut, responses=ERRORS)
async def me(principal: MailboxToken) -> MeOut:
    account = principal.account
    scopes = sorted(s.value for s in principal.scopes)
    return MeOut(name=account.name, addresses=list(account.addresses), scopes=scopes)


@router.get("/track/{message_id}", response_model=list[TrackOut], responses=ERRORS)
async def track(principal: MailboxToken, web: Web, message_id: str) -> list[TrackOut]:
    return await tracks_of(web, principal, message_id)


async def tracks_of(web: WebContext, principal: Principal, message_id: str) -> list[TrackOut]:
    """Each recipient's timeline of ``message_id``, if ``principal`` sent it (else 404)."""
    sender = principal.account.addresses
    try:
        tracks = await web.db(operations.track, web.store, message_id, sender=sender)
    except operations.OperationError as error:
        raise refused(error) from None
    return [
        TrackOut(
            recipient=t.recipient,
            receipt=t.receipt,
            timeline=[StepOut(time=s.time, what=s.what, detail=s.detail) for s in t.timeline],
        )
        for t in tracks
    ]
