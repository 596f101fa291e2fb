"""Delivery of structured documents to the organisation's business application.

:class:`ApplicationTarget` wraps the organisation's mailbox target (see
:class:`securemail.deliver.target.Target` for the contract it keeps). Verified mail whose
signed header names a document type goes to the application: validated again, then posted
to its webhook or written to its drop folder with its verification; a readable copy goes
to ``copy_to``'s mailbox first when configured. Everything else goes to the mailbox target.

- The application answered 2xx (or the files are written): 250. Anything else, or no
  answer: 4xx, and the queue keeps the entry and retries on its schedule.
- A document failing validation here: 5xx ``structured-invalid`` with the rule ids, so
  the sender's gateway gets a signed failure notice naming them (its application never
  sees the document).
  The gateway also answers the sender's organisation with a PEPPOL Message Level Response
  (``refusals``), unless the refused document is itself an MLR (no answer to an answer).
- An Invoice Response or an MLR answering a message this node sent is reported to
  ``answers``, which records it on the original's timeline (``securemail track``).

Security: only mail the gateway verified (:data:`SECUREMAIL_KEYWORD`) reaches the
application, with the verification the gateway wrote (never a field from outside: the
inbound service strips those). Webhook requests carry an HMAC-SHA256 signature over the
timestamp and the body; the secret never leaves the node.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import logging
from collections.abc import Sequence, Set
from dataclasses import dataclass
from email import message_from_bytes
from email.utils import getaddresses
from typing import Any, Protocol

from securemail.config.structured import StructuredTarget
from securemail.deliver.seal import Origin
from securemail.deliver.target import SECUREMAIL_KEYWORD, Target
from securemail.replies import Reply
from securemail.structured import mlr, responses
from securemail.structured.documents import MLR, Kind, parse
from securemail.structured.findings import Finding
from securemail.structured.message import Found, declares, find
from securemail.structured.schema import Schemas
from securemail.structured.validate import Report, validate
from securemail.structured.webhook import Application

log = logging.getLogger("securemail.structured")
INVALID = "structured-invalid"  # reason code of a document refused on receipt


class Answers(Protocol):
    """Where the business answers to this node's messages are recorded.

    Contract for :meth:`record`: note ``summary`` on the timeline of the outbound message
    whose Message-ID is ``in_reply_to``; return False if this node sent no such message.
    """

    async def record(self, in_reply_to: str, summary: str) -> bool: ...


@dataclass(frozen=True)
class Refused:
    """A document refused on receipt: who sent it (From:), to whom, which message, why, and
    the delivery's evidence id (``key``: a repeat of the delivery gives the same)."""

    sender: str
    recipient: str
    message_id: str
    findings: tuple[Finding, ...]
    key: str


class Refusals(Protocol):
    """Where the gateway's Message Level Responses go.

    Contract for :meth:`answer`: queue an MLR for ``refused`` (a signed SecureMail message
    from its recipient to its sender, answering its Message-ID); raise nothing for the
    queue's trouble (the refusal itself stands and the failure notice still goes).
    """

    async def answer(self, refused: Refused) -> None: ...


@dataclass(frozen=True)
class Verification:
    """What the gateway verified, as it wrote it in the message's trust fields."""

    status: str
    signer: str
    authentication: str
    sender: str
    message_id: str


def verification_of(message: bytes) -> Verification:
    parsed = message_from_bytes(
        message.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", policy=email.policy.compat32
    )
    names = ("X-SecureMail-Status", "X-SecureMail-Signer", "Authentication-Results", "From")
    values = [" ".join(str(parsed.get(n, "")).split()) for n in (*names, "Message-ID")]
    return Verification(*values)


def envelope(
    found: Found, report: Report, verified: Verification, key: str, recipient: str
) -> dict[str, Any]:
    """The JSON the application gets: the document and its verification (docs/structured.md)."""
    status = dict(
        part.strip().partition("=")[::2] for part in verified.status.split(";") if "=" in part
    )
    kind = report.document_type
    return {
        "delivery_id": f"{key}:{recipient.lower()}",
        "evidence_id": key,
        "recipient": recipient,
        "from": verified.sender,
        "message_id": verified.message_id,
        "in_reply_to": found.in_reply_to,
        "verified": verified.status.startswith("verified"),
        "signer_org": status.get("signer"),
        "signer_name": verified.signer,
        "label": status.get("label"),
        "receipt": status.get("receipt"),
        "authentication_results": verified.authentication,
        "document_type": None if kind is None else kind.identifier,
        "document_id": found.declared_id,
        "validation": report.as_json(),
        "document": base64.b64encode(found.document).decode("ascii"),
    }


class ApplicationTarget:
    """The mailbox target, with structured documents going to the application instead."""

    def __init__(
        self,
        inner: Target,
        settings: StructuredTarget | None,
        application: Application | None,
        schemas: Schemas | None,
        answers: Answers | None = None,
        *,
        refusals: Refusals | None = None,
    ) -> None:
        self.inner, self.settings, self.application = inner, settings, application
        self.schemas, self.answers, self.refusals = schemas, answers, refusals

    @property
    def keeps_one_copy(self) -> bool:
        app = self.application
        return self.inner.keeps_one_copy and (app is None or app.keeps_one_copy)

    async def deliver(
        self,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        key: str,
        *,
        keywords: Set[str] = frozenset(),
        origin: Origin = Origin.DELIVERED,
        fresh: Set[str] = frozenset(),
    ) -> dict[str, Reply]:
        found = find(body) if SECUREMAIL_KEYWORD in keywords and declares(body) else None
        if found is None:
            return await self.inner.deliver(
                mail_from, recipients, body, key, keywords=keywords, origin=origin, fresh=fresh
            )
        report = await asyncio.to_thread(validate, found.document, self.schemas)
        if not report.valid:
            await self._answer_refusal(body, recipients, key, found, report)
            rules = ", ".join(report.rules)
            refusal = Reply(554, "5.6.0", f"Document refused: {rules}", INVALID, rules)
            return dict.fromkeys(recipients, refusal)
        if self.application is None or self.settings is None:
            results = await self.inner.deliver(
                mail_from, recipients, body, key, keywords=keywords, origin=origin, fresh=fresh
            )
        else:
            results = await self._to_application(
                mail_from=mail_from,
                recipients=recipients,
                body=body,
                key=key,
                found=found,
                report=report,
            )
        if any(r.ok for r in results.values()):
            await self._note_answer(found, report)
        return results

    async def _to_application(
        self,
        *,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        key: str,
        found: Found,
        report: Report,
    ) -> dict[str, Reply]:
        assert self.application is not None and self.settings is not None  # noqa: S101
        copy_to = self.settings.copy_to
        if copy_to:
            keywords = frozenset({SECUREMAIL_KEYWORD})
            copied = await self.inner.deliver(mail_from, [copy_to], body, key, keywords=keywords)
            problem = copied.get(copy_to)
            if problem is not None and not problem.ok:
                return dict.fromkeys(recipients, problem)
        verified = verification_of(body)
        results = {}
        for recipient in recipients:
            results[recipient] = await self.application.deliver(
                envelope(found, report, verified, key, recipient), found.document
            )
        return results

    async def _answer_refusal(
        self, body: bytes, recipients: Sequence[str], key: str, found: Found, report: Report
    ) -> None:
        kind = report.document_type
        answer_to_answer = kind is not None and kind.kind is Kind.MESSAGE_LEVEL_RESPONSE
        if self.refusals is None or answer_to_answer or f"##{MLR}::" in (found.declared_type or ""):
            return
        verified = verification_of(body)
        sender = getaddresses([verified.sender])
        if not sender or not sender[0][1] or not verified.message_id:
            return
        for recipient in recipients:
            refused = Refused(sender[0][1], recipient, verified.message_id, report.findings, key)
            await self.refusals.answer(refused)

    async def _note_answer(self, found: Found, report: Report) -> None:
        kind = report.document_type
        if self.answers is None or kind is None or not found.in_reply_to:
            return
        if kind.kind is Kind.INVOICE_RESPONSE:
            summary = responses.read(parse(found.document)).summary()
        elif kind.kind is Kind.MESSAGE_LEVEL_RESPONSE:
            summary = mlr.read(parse(found.document)).summary()
        else:
            return
        if not await self.answers.record(found.in_reply_to, summary):
            log.info("a response answers %s, which this node did not send", found.in_reply_to)
