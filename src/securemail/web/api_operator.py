"""The rest of the operator's JSON API: delete, quarantine, failures, directory, keys, lockouts.

The same operations as the console and the CLI (:mod:`securemail.operations`), under
``/api/v1`` with an operator token (:mod:`securemail.web.api` has the queue and mailbox
endpoints, the error body and the token scopes).

Security: operator tokens only. Entries are shown by their envelope and state, never their
content; certificates by subject, serial and validity, never a key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from securemail import operations
from securemail.queue import QueueError
from securemail.web.api import ERRORS, EntryPage, OperatorToken, Paging, RequestBody, Web, refused

router = APIRouter(prefix="/api/v1")


class CertificateOut(BaseModel):
    role: str
    subject: str
    serial: str
    not_before: datetime
    not_after: datetime
    expired: bool
    days_left: int

    @classmethod
    def of(cls, c: operations.Certificate) -> CertificateOut:
        return cls(**vars(c))


class MemberOut(BaseModel):
    org_id: str
    name: str
    domains: list[str]
    region: str
    status: str
    certificates: list[CertificateOut]


class OrgKeysOut(BaseModel):
    org_id: str
    certificates: list[CertificateOut]


class LockOut(BaseModel):
    scope: str  # "account" or "source"
    key: str
    until: datetime
    failures: int


class Unlock(RequestBody):
    scope: Literal["account", "source"]
    key: str


@router.delete("/queue/{entry_id}", status_code=204, responses=ERRORS)
async def delete(principal: OperatorToken, web: Web, entry_id: str, force: bool = False) -> None:
    """Delete an entry for good; one holding receipt evidence only with ``force=true``."""
    try:
        await web.db(operations.delete, web.store, entry_id, web.clock(), force=force)
    except (operations.OperationError, QueueError) as error:
        raise refused(error) from None


@router.get("/quarantine", response_model=EntryPage, responses=ERRORS)
async def quarantine(principal: OperatorToken, web: Web, paging: Paging) -> EntryPage:
    """Quarantined entries, one page at a time (see ``/queue`` for the paging fields)."""
    return EntryPage.of(await web.db(operations.quarantine, web.store, paging.wanted()))


@router.get("/failures", response_model=EntryPage, responses=ERRORS)
async def failures(
    principal: OperatorToken,
    web: Web,
    paging: Paging,
    hours: int = Query(24, ge=1, le=24 * 90),
) -> EntryPage:
    """Entries bounced or quarantined in the last ``hours``, one page at a time."""
    found = await web.db(operations.recent_failures, web.store, web.clock(), hours, paging.wanted())
    return EntryPage.of(found)


@router.get("/directory/members", response_model=list[MemberOut], responses=ERRORS)
async def members(principal: OperatorToken, web: Web) -> list[MemberOut]:
    views = operations.directory_members(web.directory(), web.clock())
    return [
        MemberOut(
            org_id=v.member.org_id,
            name=v.member.name,
            domains=list(v.member.domains),
            region=v.member.region,
            status=v.member.status,
            certificates=[CertificateOut.of(c) for c in v.certificates],
        )
        for v in views
    ]


@router.get("/keys", response_model=list[OrgKeysOut], responses=ERRORS)
async def keys(principal: OperatorToken, web: Web) -> list[OrgKeysOut]:
    views = await web.db(operations.node_keys, web.config, web.clock())
    return [
        OrgKeysOut(org_id=v.org_id, certificates=[CertificateOut.of(c) for c in v.certificates])
        for v in views
    ]


@router.get("/lockouts", response_model=list[LockOut], responses=ERRORS)
async def lockouts(principal: OperatorToken, web: Web) -> list[LockOut]:
    locks = await web.db(operations.lockouts, web.accounts.engine, web.clock())
    return [
        LockOut(scope=lock.key.scope, key=lock.key.value, until=lock.until, failures=lock.failures)
        for lock in locks
    ]


@router.post("/lockouts/unlock", status_code=204, responses=ERRORS)
async def unlock(principal: OperatorToken, web: Web, body: Unlock) -> None:
    """Lift a lock on an account name or a source address (logged as a release)."""
    engine, service = web.accounts.engine, web.accounts.service
    try:
        await web.db(operations.unlock, engine, service, body.scope, body.key)
    except operations.OperationError as error:
        raise refused(error) from None
