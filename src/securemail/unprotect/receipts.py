"""Signed receipts at the receiving gateway: issue them, and take the ones that come back.

Issuing (RFC 2634 §2, ARCHITECTURE §5 "Receipts"): after a message that asked for a receipt
was decrypted, verified and durably delivered, one receipt per delivered recipient, signed
by the receiving organisation, with the JSON evidence, queued back to the receiptsTo address
in the same transaction that records the delivery (so a crash cannot lose or double it).
Never for a receipt or a report, never for a copy already delivered, and never to an
address outside the signer's organisation (a hostile receiptsTo is ignored and logged).

Taking (the sender's side): a receipt message addressed to our receipt address is checked
against the signature we kept when we sent the original (the same contentIdentifier and
msgSigDigest), must be signed by the gateway the directory lists for that recipient's
domain, and then changes the recipient's receipt state once; the original sender gets an
MDN. Every evidence field we can know ourselves (the digest of the content we signed, the
Message-ID in it, the recipient we sent that copy to, the member we sent it to) is
recomputed from our own records: a receipt whose evidence disagrees is refused
(``receipt-evidence-mismatch``), and the MDN carries our values, never the peer's text.
Anything else is quarantined with its reason code; the message state is untouched.

Security: receipt messages are untrusted input even after the outer signature verified:
their parts are parsed strictly (securemail.evidence) and bounded in size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from securemail import notices
from securemail.bounces import to_own_user
from securemail.directory.model import Member
from securemail.evidence import (
    Evidence,
    EvidenceError,
    is_receipt_message,
    mdn,
    read_receipt_message,
    receipt_message,
)
from securemail.keys.org import OrgKeys
from securemail.queue import (
    Direction,
    NewMessage,
    ReceiptOutcome,
    ReceiptState,
    ReceiptTaken,
    SentSignature,
)
from securemail.smime import (
    ReceiptBasis,
    SmimeError,
    Unprotected,
    make_receipt,
    verify_receipt,
)
from securemail.smime.verify import verify_signed_data
from securemail.unprotect.context import UnprotectContext

log = logging.getLogger("securemail.receipts")


class ReceiptRefusedError(Exception):
    """A receipt that is not taken: quarantined with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Issued:
    """Receipt messages to queue with the delivery, and events for the history."""

    messages: tuple[NewMessage, ...]
    events: tuple[tuple[str, str], ...]


# A plain addr-spec (RFC 5321 Mailbox, dot-atom local part): the receiptsTo is peer input.
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}")


def _is_report(content: bytes) -> bool:
    head = content.split(b"\r\n\r\n", 1)[0].lower()
    return b"multipart/report" in head or is_receipt_message(content)


def issue_receipts(
    context: UnprotectContext,
    org: OrgKeys,
    opened: Unprotected,
    *,
    signer: Member,
    delivered: Sequence[str],
    now: datetime,
) -> Issued:
    """The receipts owed for ``delivered`` recipients of a verified message."""
    request = opened.signature.receipt_request
    if request is None or not delivered or _is_report(opened.content):
        return Issued((), ())
    to = request.receipts_to[0]
    if not _ADDRESS.fullmatch(to):
        detail = f"receiptsTo {to!r} is not a plain address: no receipt sent"
        return Issued((), (("receipt-refused", f"bad-receipts-to: {detail}"),))
    if to.rpartition("@")[2].lower() not in signer.domains:
        detail = f"receiptsTo {to} is outside {signer.org_id}: no receipt sent"
        log.warning("%s", detail)
        return Issued((), (("receipt-refused", f"hostile-receipts-to: {detail}"),))
    try:
        receipt = make_receipt(opened.signature, org.signer, now=now)
    except SmimeError as error:
        return Issued((), (("receipt-refused", f"{error.reason}: {error.detail}"),))
    domain = org.organisation.domains[0]
    messages = tuple(
        NewMessage(
            Direction.OUTBOUND,
            org.organisation.org_id,
            "",
            (to,),
            receipt_message(
                receipt_der=receipt,
                evidence=_evidence(
                    context,
                    org,
                    opened,
                    content_identifier=request.content_identifier,
                    recipient=rcpt,
                    now=now,
                ),
                sender=f"postmaster@{domain}",
                to=to,
                now=now,
                message_id_domain=domain,
            ),
            client="local",
            kind="notice",
        )
        for rcpt in delivered
    )
    events = tuple(("receipt-issued", f"for {r} to {to}") for r in delivered)
    return Issued(messages, events)


def _evidence(
    context: UnprotectContext,
    org: OrgKeys,
    opened: Unprotected,
    *,
    content_identifier: bytes,
    recipient: str,
    now: datetime,
) -> Evidence:
    return Evidence(
        original_message_id=notices.message_id(opened.content),
        content_digest="sha256:" + hashlib.sha256(opened.content).hexdigest(),
        content_identifier=content_identifier.hex(),
        recipient=recipient,
        delivered_at=now,
        receiving_org=org.organisation.org_id,
        receiving_gateway=context.name,
    )


@dataclass(frozen=True)
class Taken:
    """What taking a receipt did (the MDN, if any, is already queued)."""

    outcome: ReceiptOutcome
    detail: str


async def take_receipt(context: UnprotectContext, opened: Unprotected, now: datetime) -> Taken:
    """Check a receipt message and record it against the signature we sent."""
    try:
        receipt_der, evidence = read_receipt_message(opened.content)
    except EvidenceError as error:
        raise ReceiptRefusedError(error.reason, error.detail) from None
    sent = await context.queue.db(context.queue.tracking.signature, evidence.content_identifier)
    if sent is None:
        raise ReceiptRefusedError("receipt-unknown", "no message of ours has that identifier")
    try:
        verified = _receipt_signer(context, receipt_der, sent.basis, now)
    except SmimeError as error:
        raise ReceiptRefusedError(error.reason, error.detail) from None
    directory = context.directory()
    domain = evidence.recipient.rpartition("@")[2]
    if directory is None or not directory.may_sign_for(verified, domain):
        detail = f"the receipt's signer is not the gateway the directory lists for {domain}"
        raise ReceiptRefusedError("receipt-wrong-signer", detail)
    member = directory.member(sent.peer_org)
    gateway = sent.peer_org if member is None else member.endpoints[0].host
    ours = our_evidence(sent, evidence, gateway)
    # The sender's MDN is made first and queued in the receipt's own commit, and only if
    # this receipt is the one accepted: a crash cannot tell the sender twice or never.
    follow_up = await _mdn_for_sender(context, sent.entry_id, ours, now)
    taken = ReceiptTaken(
        evidence.content_identifier,
        ours.recipient,
        receipt_der,
        evidence.to_json().decode(),
        follow_up,
    )
    outcome = await context.queue.commits.accept_receipt(taken)  # with others' (group commit)
    context.queue.notify_about(follow_up)
    if outcome is ReceiptOutcome.UNKNOWN:
        raise ReceiptRefusedError("receipt-unknown", f"{evidence.recipient} was not sent this copy")
    return Taken(outcome, f"{evidence.recipient}: {outcome.value}")


def our_evidence(sent: SentSignature, claimed: Evidence, gateway: str) -> Evidence:
    """The evidence as we relay it: each field we can know is recomputed from what we
    signed and sent; raises ReceiptRefusedError if the receipt's evidence says otherwise.

    ``delivered_at`` stays the receiving gateway's statement (only it can know), bounded by
    the Evidence format; ``gateway`` is the receiving member's endpoint from the directory.
    """
    content, _ = verify_signed_data(sent.signed_data)  # what we signed, from our own records
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    message_id = notices.message_id(content)
    wanted = claimed.recipient.lower()
    recipient = next((r for r in sent.recipients if r.lower() == wanted), None)
    if recipient is None:
        raise ReceiptRefusedError("receipt-unknown", f"{claimed.recipient} was not sent this copy")
    checks = {
        "content_digest": claimed.content_digest == digest,
        "original_message_id": claimed.original_message_id == message_id,
        "receiving_org": claimed.receiving_org == sent.peer_org,
    }
    wrong = [name for name, agrees in checks.items() if not agrees]
    if wrong:
        detail = f"the evidence disagrees with what we sent: {', '.join(wrong)}"
        raise ReceiptRefusedError("receipt-evidence-mismatch", detail)
    return dataclasses.replace(
        claimed,
        content_digest=digest,
        original_message_id=message_id,
        recipient=recipient,
        receiving_org=sent.peer_org,
        receiving_gateway=gateway,
    )


def _receipt_signer(
    context: UnprotectContext, receipt_der: bytes, basis: str, now: datetime
) -> x509.Certificate:
    """The receipt's signer, once the receipt is bound to our signature and its chain valid."""
    verified = verify_receipt(
        receipt_der, ReceiptBasis.from_json(basis), trust=context.trust(), now=now
    )
    return verified.signer


async def _mdn_for_sender(
    context: UnprotectContext, entry_id: str, evidence: Evidence, now: datetime
) -> tuple[NewMessage, ...]:
    original = await context.queue.db(context.queue.manager.get, entry_id)
    if original is None or not original.mail_from:
        return ()
    sender_org = context.notices.org_for(original.mail_from)
    if sender_org is None:
        return ()
    body = await context.queue.db(context.queue.manager.body, entry_id)
    domain = sender_org.organisation.domains[0]
    report = mdn(
        original_header=notices.original_header(body),
        reporting_mta=context.name,
        postmaster=f"postmaster@{domain}",
        to=original.mail_from,
        evidence=evidence,
        now=now,
        message_id_domain=domain,
    )
    return (to_own_user(sender_org, original.mail_from, report, now),)


async def settle_from_peer_notice(
    context: UnprotectContext, opened: Unprotected, signer: Member, now: datetime
) -> tuple[tuple[str, str], ...]:
    """A failure notice from a recipient's gateway is that recipient's final outcome.

    The receipt awaited for each failed recipient whose domain the notice's signer owns is
    closed without a second notice, so the sender hears exactly once: this notice. Only
    ``Action: failed`` reports count, and only for domains the signer's entry lists.
    """
    report = notices.read_failure_report(opened.content)
    if report is None:
        return ()
    failed = {a for a in report.failed if a.rpartition("@")[2] in signer.domains}
    if not failed:
        return ()
    records = await context.queue.db(
        context.queue.tracking.receipt_records, report.original_message_id
    )
    events = []
    for record in records:
        if record.recipient.lower() in failed and record.state is ReceiptState.AWAITING:
            await context.queue.db(
                context.queue.tracking.expire_receipt, record.entry_id, record.recipient, now
            )
            events.append(("receipt-closed", f"{record.recipient}: failed at {signer.org_id}"))
    return tuple(events)
