"""The operator's JSON API for the contact register: list, show, start and revoke.

The same operations as ``securemail contacts`` and the console's Contacts page
(:mod:`securemail.contacts.desk`), under ``/api/v1/contacts`` with an operator token.

Security: operator tokens only. Address, purpose and requirements are checked by the desk
before anything is stored or queued; the request message is signed like all outbound mail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from securemail.contacts import desk
from securemail.contacts.model import Contact
from securemail.web.api import ERRORS, ApiError, OperatorToken, RequestBody, Web

router = APIRouter(prefix="/api/v1/contacts")
_STATUS = {
    desk.ContactReason.NOT_FOUND: 404,
    desk.ContactReason.BAD_REQUEST: 400,
    desk.ContactReason.NO_ORGANISATION: 400,
}


class ContactOut(BaseModel):
    id: str
    org_id: str
    address: str
    purpose: str
    require: list[str]
    status: str  # pending, verified, expired, withdrawn or revoked
    attested: str | None
    note: str | None
    requested_at: datetime
    verified_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def of(cls, contact: Contact, now: datetime) -> ContactOut:
        return cls.model_validate(desk.as_json(contact, now))


class ContactPageOut(BaseModel):
    """One page of the register, newest first, and how many match in all."""

    entries: list[ContactOut]
    offset: int
    limit: int
    total: int
    more: bool
    next_offset: int | None


class StartVerification(RequestBody):
    address: str = Field(max_length=320)
    purpose: str = Field(max_length=500)
    require: list[str] = Field(default_factory=list)
    valid_days: int = Field(365, ge=1, le=3660)
    org_id: str | None = None


def _refused(error: desk.ContactError) -> ApiError:
    return ApiError(_STATUS[error.reason], error.reason.value, error.detail)


def _desk(web: Web) -> desk.ContactDesk:
    if web.contacts is None:
        raise ApiError(404, "no-contact-register", "this node keeps no contact register")
    return web.contacts


@router.get("", response_model=ContactPageOut, responses=ERRORS)
async def contacts(
    principal: OperatorToken,
    web: Web,
    address: str = Query("", max_length=320),
    offset: int = Query(0, ge=0, le=2**31 - 1),
    limit: int = Query(100, ge=1, le=desk.MAX_PAGE),
) -> ContactPageOut:
    """Verifications whose address contains ``address``, newest first, one page at a time."""
    found = await web.db(desk.page, _desk(web).register, address, offset, limit)
    now = web.clock()
    return ContactPageOut(
        entries=[ContactOut.of(c, now) for c in found.entries],
        offset=found.offset,
        limit=found.limit,
        total=found.total,
        more=found.more,
        next_offset=found.next_offset,
    )


@router.get("/{ident}", response_model=ContactOut, responses=ERRORS)
async def contact(principal: OperatorToken, web: Web, ident: str) -> ContactOut:
    try:
        found = await web.db(desk.one, _desk(web).register, ident)
    except desk.ContactError as error:
        raise _refused(error) from None
    return ContactOut.of(found, web.clock())


@router.post("", status_code=201, response_model=ContactOut, responses=ERRORS)
async def start(principal: OperatorToken, web: Web, body: StartVerification) -> ContactOut:
    """Ask the holder of ``address`` to confirm it; the pending verification."""
    desk_ = _desk(web)
    now = web.clock()
    try:
        org = desk.organisation(web.config, body.org_id)
        require = desk.requirements(",".join(body.require))
        valid_for = timedelta(days=body.valid_days)
        asked, request = desk.ask(
            org, body.address, body.purpose, require, valid_for, now=now, client="api"
        )
    except desk.ContactError as error:
        raise _refused(error) from None
    await web.db(desk_.register.add, asked)
    await desk_.enqueue(request)
    return ContactOut.of(asked, now)


@router.post("/{ident}/revoke", response_model=ContactOut, responses=ERRORS)
async def revoke(principal: OperatorToken, web: Web, ident: str) -> ContactOut:
    """Stop relying on a verification (the holder is not told)."""
    try:
        revoked = await web.db(desk.revoke, _desk(web).register, ident)
    except desk.ContactError as error:
        raise _refused(error) from None
    return ContactOut.of(revoked, web.clock())
