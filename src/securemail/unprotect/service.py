"""The inbound service: claim mail from peer gateways, unprotect, check, mark and deliver.

Theory of operation. One attempt of one inbound entry: decrypt with the keys of the
organisation that owns the recipients' domain, verify the signature, validate the signer's
chain against the federation anchor and the directory's CRLs, parse the single From:
strictly and check that the signer's directory entry owns its domain, and that the
signature was sealed for this organisation and every envelope recipient of the entry
(:mod:`securemail.unprotect.sealing`). Then strip any
trust header that came from outside, add our Authentication-Results and status fields, and
hand the message to the organisation's delivery target. The idempotency key (signer
certificate + signed content) makes a message re-sent after a lost 250 land once.

Entries of kind "ordinary" (mail from outside SecureMail, see the ordinary listener) are
never unprotected: they are delivered marked "not verified" (:func:`securemail.marking
.mark_ordinary`), with a warning when they claim a classification.

Security: every byte of the entry is untrusted. A refusal at any step quarantines the entry
with the reason code (kept, never delivered, never deleted) and logs it; nothing of the
decrypted content reaches a mailbox, a notice or the log. A quarantined entry gets no
notice (THREATS.md K, signed backscatter): anyone who can reach the peer port could
otherwise make us sign text to an address of their choosing. A verified message vouches
for its envelope sender only when the signer's directory entry owns the sender's domain as
well as the From: domain; only then may a later failure or delay notice, or a receipt, be
sent, and a notice quotes the signed routing fields only (see securemail.bounces). A delivery
target's temporary failure leaves the entry queued.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import serialization

from securemail import addresses, marking
from securemail.bounces import VOUCHED, bounce_newly_failed
from securemail.deliver.seal import Origin
from securemail.deliver.target import SECUREMAIL_KEYWORD, StoreUncertainError
from securemail.directory.model import Member
from securemail.errors import SecureMailError
from securemail.keys.org import OrgKeys
from securemail.policy.labels import classify
from securemail.policy.model import OrgPolicy
from securemail.queue import Attempt, Entry, NewMessage, QueueError, Reservation
from securemail.replies import ok, permanent, temporary
from securemail.smime import Limits, Unprotected, mime, unprotect
from securemail.smime.message import OUTER_FIELDS
from securemail.unprotect.assurance import Assessed, assess, judge_assurance
from securemail.unprotect.contacts import take_answer
from securemail.unprotect.context import UnprotectContext
from securemail.unprotect.holding import hold_for_key, waits_for_key
from securemail.unprotect.receipts import (
    ReceiptRefusedError,
    issue_receipts,
    settle_from_peer_notice,
    take_receipt,
)
from securemail.unprotect.sealing import NotSealedError, check_sealed

log = logging.getLogger("securemail.unprotect")

# A copy of the message is being delivered by another entry: how long to wait for its
# outcome (seconds, about 3 in all) before leaving the recipient for the next attempt.
_BUSY_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5)
_BUSY = temporary("duplicate-in-progress", "a copy of this message is being delivered")
_HOLDING = frozenset({Reservation.FRESH, Reservation.RESERVED})  # this entry may deliver
BELOW_POLICY = "assurance-below-policy"
_OUR_TRACE = re.compile(rb"Received:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")


class RefusedError(Exception):
    """A message that fails a check: quarantined with ``reason`` (a reason code)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Opened:
    """A peer message that passed every check: the marked message to deliver, its
    idempotency key, the receiving organisation, what was verified, and the evidence.

    ``vouched`` is the signed routing fields when the signer also owns the envelope
    sender's domain (a notice or receipt may then be sent), else None.
    """

    marked: bytes
    key: str
    org: OrgKeys
    unprotected: Unprotected
    signer: Member
    evidence: str
    vouched: bytes | None
    assessed: Assessed = field(default_factory=Assessed)


class Inbound:
    """Process inbound queue entries for the organisations of one node."""

    def __init__(self, context: UnprotectContext) -> None:
        self.context = context

    async def process(self, entry: Entry) -> Entry:
        """One attempt at every pending recipient of ``entry``; return the recorded entry."""
        now = self.context.clock()
        body = await self.context.queue.body(entry)
        local = self.context.orgs.get(entry.org_id)
        if entry.kind == "notice" and entry.client == "local" and local is not None:
            return await self._deliver(entry, local, body, _key(b"local", body), None)
        if entry.kind == "ordinary":
            return await self._deliver_ordinary(entry, body, now)
        try:
            opened = await asyncio.to_thread(self._open, entry, body, now)
            if self._is_our_receipt(entry, opened):
                return await self._take_receipt(entry, opened, now)
            if self._answers_a_verification(entry, opened):
                return await self._take_answer(entry, opened, now)
        except (RefusedError, ReceiptRefusedError) as refusal:
            if refusal.reason == "not-for-us" and waits_for_key(self.context, entry, body, now):
                return await hold_for_key(self.context, entry, now)
            return await self._quarantine(entry, body, refusal.reason, refusal.detail, now)
        recorded = await self._deliver(entry, opened.org, opened.marked, opened.key, opened)
        # A recipient the organisation's store refused for good: the sender's gateway is
        # told, quoting the outer (routing) header only, never the decrypted message.
        await bounce_newly_failed(self.context.notices, entry, recorded, body, now)
        return recorded

    async def _deliver_ordinary(self, entry: Entry, body: bytes, now: datetime) -> Entry:
        """Mail from the ordinary listener: never unprotected, whatever it contains (only the
        peer listener's mail can be verified), delivered marked not verified by SecureMail."""
        org = self.context.orgs.get(entry.org_id)
        if org is None and waits_for_key(self.context, entry, body, now):
            return await hold_for_key(self.context, entry, now)
        if org is None:
            return await self._quarantine(
                entry, body, "not-for-us", f"no organisation {entry.org_id} on this node", now
            )
        marked, key = await asyncio.to_thread(_mark_ordinary, body, self.context.name)
        recorded = await self._deliver(entry, org, marked, key, None)
        await bounce_newly_failed(self.context.notices, entry, recorded, body, now)
        return recorded

    def _open(self, entry: Entry, body: bytes, now: datetime) -> Opened:
        """Unprotect and check: see :class:`Opened`."""
        org = self.context.orgs.get(entry.org_id)
        if org is None:
            raise RefusedError("not-for-us", f"no organisation {entry.org_id} on this node")
        try:
            opened = unprotect(
                body,
                identities=org.identities,
                trust=self.context.trust(),
                now=now,
                require_encryption=True,
            )
        except SecureMailError as error:
            raise RefusedError(error.reason, error.detail) from None
        author = _author(opened)
        directory = self.context.directory()
        if directory is None or not directory.may_sign_for(opened.signature.signer, author.domain):
            raise RefusedError(
                "from-not-authorised",
                f"the signer's directory entry does not own {author.domain}",
            )
        signer = directory.owner_of(author.domain)
        assert signer is not None  # noqa: S101 (may_sign_for found it)
        try:
            bound = check_sealed(
                opened.signature.sealed_for,
                org_id=org.organisation.org_id,
                recipients=[r.address for r in entry.recipients],
                unsealed=self.context.unsealed,
                signer_seals="sealed-for" in signer.capabilities,
            )
        except NotSealedError as error:
            raise RefusedError(error.reason, error.detail) from None
        judged = judge_assurance(
            opened.signature.sender_assurance, signer=signer, author=author.address
        )
        assessed = assess(
            judged,
            org.organisation.policy.assurance,
            author=author.address,
            recipients=entry.pending(),
        )
        verdict = marking.Verdict(
            authserv_id=self.context.name,
            signer_org=signer.org_id,
            signer_name=signer.name,
            from_address=author.address,
            label=_label(opened, author.address),
            receipt=None if opened.signature.receipt_request is None else "requested",
            recipient_bound=bound,
            assurance=None if judged is None else judged.assertion,
            assurance_problem=None if judged is None else judged.problem,
            assurance_warning=assessed.warning,
        )
        certificate = opened.signature.signer.public_bytes(serialization.Encoding.DER)
        owns_sender = not entry.mail_from or _domain(entry.mail_from) in signer.domains
        return Opened(
            marked=marking.mark_verified(opened.content, verdict),
            key=_key(certificate, opened.content),
            org=org,
            unprotected=opened,
            signer=signer,
            evidence=_evidence(opened, signer.org_id, author.address),
            vouched=signed_routing_fields(opened.content) if owns_sender else None,
            assessed=assessed,
        )

    def _is_our_receipt(self, entry: Entry, opened: Opened) -> bool:
        """Mail to our receipt address is a receipt, or nothing: it never reaches a mailbox."""
        address = opened.org.organisation.receipt_address
        addressed = [r.address for r in entry.recipients if r.address.lower() == address]
        if not addressed:
            return False
        if len(entry.recipients) != 1:
            raise RefusedError("receipt-malformed", "a receipt goes to the receipt address alone")
        return True

    def _answers_a_verification(self, entry: Entry, opened: Opened) -> bool:
        """Mail to the contacts address alone is a holder's answer (securemail.contacts)."""
        address = opened.org.organisation.contacts_address
        only = [r.address.lower() for r in entry.recipients] == [address]
        return only and self.context.contacts is not None

    async def _take_answer(self, entry: Entry, opened: Opened, now: datetime) -> Entry:
        register = self.context.contacts
        assert register is not None  # noqa: S101 (_answers_a_verification checked it)
        org_id = opened.org.organisation.org_id
        detail = await asyncio.to_thread(
            take_answer, register, opened.unprotected, opened.signer, org_id, now
        )
        attempt = Attempt(
            entry.id,
            dict.fromkeys(entry.pending(), ok("verification answer taken")),
            (("verified", opened.evidence), ("contact-answer", detail)),
            holder=entry.claimed_by,
        )
        return await self.context.queue.commits.record(attempt)

    async def _take_receipt(self, entry: Entry, opened: Opened, now: datetime) -> Entry:
        taken = await take_receipt(self.context, opened.unprotected, now)
        attempt = Attempt(
            entry.id,
            dict.fromkeys(entry.pending(), ok(f"receipt {taken.outcome.value}")),
            (("verified", opened.evidence), (f"receipt-{taken.outcome.value}", taken.detail)),
            holder=entry.claimed_by,
        )
        return await self.context.queue.commits.record(attempt)

    async def _deliver(
        self,
        entry: Entry,
        org: OrgKeys,
        message: bytes,
        key: str,
        opened: Opened | None,
    ) -> Entry:
        """Deliver to the recipients not yet served with ``key``, and record the outcome.

        Copies of one message (a sender retried while we were down) may be in hand at once:
        each key is reserved for this entry in the database first (one holder per key in
        every process and node); the commit that records the delivery marks it delivered
        and queues the receipts owed, so both happen once per key.
        """
        target = self.context.targets[org.organisation.org_id]
        refused = dict(opened.assessed.refused) if opened is not None else {}
        keys = {r: f"{key}:{r.lower()}" for r in entry.pending() if r not in refused}
        held = await self._reserve(entry, keys)
        results = {r: permanent(BELOW_POLICY, why, "5.7.1", why) for r, why in refused.items()}
        results |= {r: ok("duplicate suppressed") for r in keys if held[r] is Reservation.DELIVERED}
        results |= {r: _BUSY for r in keys if held[r] is Reservation.BUSY}
        # Handed to the store by this entry in an attempt a crash left unrecorded: the store
        # has it; record it (and issue its receipts) now, without a second copy.
        handed = [r for r in keys if held[r] is Reservation.HANDED]
        results |= {r: ok("handed to the store before a crash") for r in handed}
        reserved = [r for r in keys if held[r] in _HOLDING]
        if reserved:
            # Only mail that was unprotected and verified carries the keyword.
            keywords = frozenset() if opened is None else frozenset({SECUREMAIL_KEYWORD})
            try:
                results |= await target.deliver(
                    entry.mail_from,
                    reserved,
                    message,
                    key,
                    keywords=keywords,
                    origin=_origin(entry),
                    fresh=frozenset(r for r in reserved if held[r] is Reservation.FRESH),
                )
            except StoreUncertainError as error:
                return await self._defer_uncertain(entry, error)
        delivered = [r for r in reserved if results[r].ok]
        if delivered and not target.keeps_one_copy:
            await self._mark_handed(entry, [keys[r] for r in delivered])
        delivered += handed
        events = [] if opened is None else [("verified", opened.evidence), *_assurance(opened)]
        events += [("handed-before-crash", f"{r}: not delivered again") for r in handed]
        follow_up: tuple[NewMessage, ...] = ()
        if opened is not None and opened.vouched is None:
            events.append(("sender-not-vouched", _not_vouched(opened.signer.org_id)))
        if opened is not None and opened.vouched is not None:
            # A notice or receipt is our word: only for a sender the signature vouches for
            # (a peer's failure notice, from <>, is vouched and may settle receipt waits).
            events.append((VOUCHED, opened.vouched.decode("utf-8", "replace")))
            issued = issue_receipts(
                self.context,
                org,
                opened.unprotected,
                signer=opened.signer,
                delivered=delivered,
                now=self.context.clock(),
            )
            events += issued.events
            follow_up = issued.messages
            events += await settle_from_peer_notice(
                self.context, opened.unprotected, opened.signer, self.context.clock()
            )
        attempt = Attempt(
            entry.id,
            results,
            tuple(events),
            tuple(keys[r] for r in delivered),
            enqueue=follow_up,
            holder=entry.claimed_by,
        )
        recorded = await self.context.queue.commits.record(attempt)
        self.context.queue.notify_about(follow_up)
        return recorded

    async def _defer_uncertain(self, entry: Entry, error: StoreUncertainError) -> Entry:
        """The store cannot tell whether it holds the message: defer the whole attempt with
        its reply, keeping every key reserved (a defer keeps them), so the next attempt
        takes them over and the store looks for a copy before storing another."""
        log.warning("%s: the store cannot tell what it holds: %s", entry.id, error)
        queue = self.context.queue
        now = self.context.clock()
        return await queue.db(
            queue.manager.defer, entry.id, error.reply, now, holder=entry.claimed_by
        )

    async def _mark_handed(self, entry: Entry, keys: list[str]) -> None:
        """The store said 250 and cannot tell a second copy: say so in the database at once
        (a transaction of its own, not the group commit), so that a crash before the
        attempt's record does not have the entry delivered again (:mod:`securemail.queue
        .dedup`). If the database is away, the record that follows meets the same trouble."""
        queue = self.context.queue
        try:
            await queue.db(queue.keys.handed, keys, entry.id, self.context.clock())
        except QueueError as error:
            log.warning("%s: marking %d keys handed failed: %s", entry.id, len(keys), error)

    async def _reserve(self, entry: Entry, keys: dict[str, str]) -> dict[str, Reservation]:
        """Each recipient's key reserved for ``entry`` (see :mod:`securemail.queue.dedup`).

        A key another live entry holds is a copy being delivered right now (the sender
        retried while we were down, and both copies are in hand, here or in another
        process): wait for its outcome a little, then leave the recipient for later.
        """
        queue = self.context.queue
        held: dict[str, Reservation] = {}
        waiting = dict(keys)
        for pause in (*_BUSY_PAUSES, None):
            found = await queue.commits.reserve(list(waiting.values()), entry.id)
            held |= {r: found[k] for r, k in waiting.items()}
            waiting = {r: k for r, k in waiting.items() if found[k] is Reservation.BUSY}
            if not waiting or pause is None:
                return held
            await asyncio.sleep(pause)
        return held

    async def _quarantine(
        self, entry: Entry, body: bytes, reason: str, detail: str, now: datetime
    ) -> Entry:
        """Keep the entry, never delivered, and send nothing: whoever sent it is unproved,
        or is not the sender the signature vouches for (THREATS.md K)."""
        log.warning("quarantined %s: %s: %s; no notice sent", entry.id, reason, detail)
        queue = self.context.queue
        return await queue.db(
            queue.manager.quarantine, entry.id, reason, detail, now, holder=entry.claimed_by
        )


def _assurance(opened: Opened) -> list[tuple[str, str]]:
    """History lines of the sender assurance and of recipients the policy refused."""
    assessed = opened.assessed
    events = [] if assessed.event is None else [("assurance", assessed.event)]
    events += [(BELOW_POLICY, f"{r}: {why}") for r, why in assessed.refused]
    return events + ([] if assessed.warning is None else [(BELOW_POLICY, assessed.warning)])


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def signed_routing_fields(content: bytes) -> bytes:
    """The routing fields (From, To, Cc, Date, Message-ID) of the signed message, which is
    all a notice about it may quote: each was under the signature, none is the outer copy."""
    block, _ = mime.split_header(content, Limits())
    wanted = {name.lower() for name in OUTER_FIELDS}
    fields = mime.header_fields(block, Limits())
    return b"".join(
        name.encode("ascii") + b": " + value + mime.CRLF
        for name, value in fields
        if name.lower() in wanted
    )


def _not_vouched(signer_org: str) -> str:
    return f"the envelope sender's domain is not {signer_org}'s: no notice or receipt"


def _origin(entry: Entry) -> Origin:
    """The gateway's own notices and receipts to its users are sealed as such (the webmail
    shows them as the gateway's, not as unverified mail); everything else as delivered."""
    own = entry.kind == "notice" and entry.client == "local"
    return Origin.NOTICE if own else Origin.DELIVERED


def _author(opened: Unprotected) -> addresses.Mailbox:
    try:
        return addresses.author(opened.content)
    except addresses.AddressError as error:
        raise RefusedError(error.reason, error.detail) from None


def _label(opened: Unprotected, author: str) -> str | None:
    """The signed label, as shown on delivery; the signed label wins over the message's own
    marking, and a disagreement is said (THREATS-style: flagged, never silently trusted)."""
    signed = opened.signature.label
    own = classify(opened.content, OrgPolicy(), sender=author).label
    signed_text = None if signed is None or signed.classification is None else signed.classification
    own_text = None if own is None else own.classification
    if signed_text == own_text:
        return None if signed is None else signed.marking or None  # with a privacy mark
    if signed_text is None:
        return f"none signed; the message's own marking {own_text} is not verified"
    return f"{signed_text} (signed; the message's own marking says {own_text or 'nothing'})"


def _evidence(opened: Unprotected, signer_org: str, author: str) -> str:
    cipher = "" if opened.encryption is None else f", {opened.encryption.content_encryption}"
    return f"signed by {signer_org} (chain valid), From {author} owned by the signer{cipher}"


def _mark_ordinary(body: bytes, authserv_id: str) -> tuple[bytes, str]:
    """The marked message and its idempotency key: the content without the ``Received:``
    field our listener put first, since a copy the sender re-sent after a lost 250 differs
    only there and must land once."""
    ours = _OUR_TRACE.match(body)
    content = body if ours is None else body[ours.end() :]
    return marking.mark_ordinary(body, authserv_id), _key(b"ordinary", content)


def _key(certificate: bytes, content: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(certificate).digest() + content).hexdigest()
