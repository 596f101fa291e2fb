"""The outbound service: claim queued mail, route each recipient, protect, and relay it.

Theory of operation. One attempt of one queue entry: the recipients still pending are
grouped by the routing decision (policy.routing.route). Recipients at one member gateway
share one protected copy: signed with the sending organisation's key, encrypted to the
certificate the directory lists for that member, relayed over STARTTLS to the member's
endpoint whose certificate must carry the directory's SPKI pin. The signature names that
member and exactly the envelope recipients at it (the sealedFor attribute), so the copy
opens for no one else: a Bcc recipient is an envelope recipient like any other, and the
attribute travels inside the encryption, seen only by that member. Recipients outside the
federation go, unchanged, to the smarthost if the operator set one. Every recipient gets a
Reply; the queue records them in one transaction and schedules the rest.

Security: the queued message is the untrusted input. The sending organisation signs only a
message whose single, strictly parsed From: is in one of its domains (the authenticated
From: promise); anything else bounces with ``from-not-authorised``. No path sends a member's
mail without encryption: a missing certificate, endpoint, STARTTLS or pin defers the entry,
and after the maximum lifetime it bounces with a failure notice. Never a plaintext fallback.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from securemail import addresses
from securemail.accounts.assurance import Submitted
from securemail.bounces import bounce_newly_failed
from securemail.config.reasons import HoldReason
from securemail.directory.model import Directory
from securemail.keys.org import OrgKeys
from securemail.policy.labels import Classified, classify, protective_marking
from securemail.policy.routing import (
    Hop,
    Route,
    RouteKind,
    choose_inner_encoding,
    hops,
    route,
)
from securemail.protect.context import ProtectContext
from securemail.protect.groups import Group, group_recipients
from securemail.queue import Attempt, Entry, NewSignature
from securemail.relay import Destination, RelayError
from securemail.replies import Reply, permanent, temporary
from securemail.smime import (
    ProtectOptions,
    ReceiptRequest,
    SealedFor,
    SenderAssurance,
    SmimeError,
    protect,
)

log = logging.getLogger("securemail.protect")


@dataclass(frozen=True)
class _Try:
    """One attempt's context: the entry, its message, the sending organisation, the time,
    and the events to record with the outcome (one commit per attempt)."""

    entry: Entry
    body: bytes
    org: OrgKeys
    now: datetime
    events: list[tuple[str, str]] = field(default_factory=list)
    signatures: list[NewSignature] = field(default_factory=list)
    classified: Classified = field(default_factory=lambda: Classified(None, "none"))
    relays: dict[str, str] = field(default_factory=dict)  # recipient: host:port tried
    provider: str | None = None  # the sending org's id if the directory lists it as msp

    @property
    def wants_receipt(self) -> bool:
        """A signed receipt is asked for (never for a notice or a receipt: kind "notice")."""
        policy = self.org.organisation.receipts
        return self.entry.kind == "mail" and (
            asks_for_receipt(self.body) or policy.always(self.entry.mail_from)
        )


class Outbound:
    """Process outbound queue entries for the organisations of one node."""

    def __init__(self, context: ProtectContext) -> None:
        self.context = context

    async def process(self, entry: Entry) -> Entry:
        """One attempt at every pending recipient of ``entry``; return the recorded entry."""
        context = self.context
        now = context.clock()
        body = await context.queue.body(entry)
        org = context.orgs.get(entry.org_id)
        events: list[tuple[str, str]] = []
        signatures: list[NewSignature] = []
        relays: dict[str, str] = {}
        if org is None and entry.org_id in context.expected:  # its keys are not installed yet
            detail = f"{entry.org_id}'s signing key is not installed here"
            results = _all(entry.pending(), temporary(HoldReason.KEY_UNAVAILABLE, detail))
        elif org is None:
            results = _all(entry.pending(), permanent("unknown-organisation", entry.org_id))
        else:
            classified = self._classify(entry, body, org, events)
            directory = context.directory()
            attempt = _Try(entry, body, org, now, events, signatures, classified, relays)
            provider = provider_id(directory, org.organisation.org_id)
            results = await self._attempt(replace(attempt, provider=provider), directory)
        recorded = await context.queue.commits.record(
            Attempt(
                entry.id,
                results,
                tuple(events),
                signatures=tuple(signatures),
                holder=entry.claimed_by,
                relays=tuple(relays.items()),
            )
        )
        await bounce_newly_failed(context.notices, entry, recorded, body, now)
        return recorded

    def _classify(
        self, entry: Entry, body: bytes, org: OrgKeys, events: list[tuple[str, str]]
    ) -> Classified:
        """The message's label, with the history events that say where it came from."""
        sender = entry.mail_from or f"postmaster@{org.organisation.domains[0]}"
        classified = classify(body, org.organisation.policy, sender=sender)
        if classified.label is None:
            return classified
        events.append(("classified", _classification(classified)))
        node = self.context.node_policy
        if node.region != "NZ" and org.organisation.policy.requires_securemail(classified.label):
            allowed = node.allow_offshore_labelled  # the issue asks for it to be logged
            verdict = "allowed by the operator" if allowed else "refused (node-offshore)"
            event = "offshore-allowed" if allowed else "offshore-refused"
            events.append((event, f"node region {node.region}: {verdict}"))
        return classified

    async def _attempt(self, attempt: _Try, directory: Directory | None) -> dict[str, Reply]:
        entry, org = attempt.entry, attempt.org
        refusal = _check_author(attempt.body, org, entry.kind)
        if refusal is None:
            refusal = _check_label(attempt.classified)
        if refusal is not None:
            return _all(entry.pending(), refusal)
        label = attempt.classified.label
        groups = group_recipients(
            entry.pending(),
            lambda domain: route(
                domain,
                sender_org=org.organisation.org_id,
                directory=directory,
                smarthost=self.context.smarthost is not None,
                now=attempt.now,
                label=label,
                org_policy=org.organisation.policy,
                node_policy=self.context.node_policy,
            ),
        )
        replies = await asyncio.gather(*(self._send_group(attempt, group) for group in groups))
        return {address: reply for part in replies for address, reply in part.items()}

    async def _send_group(self, attempt: _Try, group: Group) -> dict[str, Reply]:
        decision = group.route
        if decision.kind is RouteKind.REFUSE:
            return _all(group.recipients, _refused(decision))
        if decision.kind is RouteKind.DEFER:
            return _all(group.recipients, temporary(decision.reason, decision.explanation))
        if decision.kind is RouteKind.SMARTHOST:
            destination = self.context.smarthost
            assert destination is not None  # noqa: S101 (route() said there is one)
            return await self._smarthost(destination, attempt, group.recipients)
        return await self._send_member(attempt, group)

    async def _smarthost(
        self, destination: Destination, attempt: _Try, recipients: Sequence[str]
    ) -> dict[str, Reply]:
        try:
            return await self._relay(destination, attempt, recipients, attempt.body)
        except RelayError as error:
            log.warning("relay of %s to %s deferred: %s", attempt.entry.id, destination.host, error)
            return _all(recipients, temporary(error.reason, error.detail, "Peer unreachable"))

    async def _send_member(self, attempt: _Try, group: Group) -> dict[str, Reply]:
        decision, recipients, org = group.route, group.recipients, attempt.org
        assert decision.member is not None and decision.certificate is not None  # noqa: S101
        request = None
        if attempt.wants_receipt:  # receipts come back to our own gateway (ESS receiptsTo)
            request = ReceiptRequest(os.urandom(16), (org.organisation.receipt_address,))
        try:
            protected = protect(
                attempt.body,
                org.signer,
                [decision.certificate],
                now=attempt.now,
                options=self._options(attempt, decision, request, recipients),
                canonical=True,
            )
        except SmimeError as error:
            return _all(recipients, permanent(error.reason, error.detail, "5.6.0"))
        if request is not None and protected.receipt_basis and protected.signed_data:
            attempt.signatures.append(
                NewSignature(
                    content_identifier=request.content_identifier.hex(),
                    peer_org=decision.member.org_id,
                    recipients=tuple(recipients),
                    signed_data=protected.signed_data,
                    basis=protected.receipt_basis.to_json(),
                    window=org.organisation.receipts.window,
                )
            )
        attempt.events.append(
            (
                "protected",
                f"signed by {org.organisation.org_id}, encrypted to "
                f"{decision.member.org_id} ({decision.cipher})",
            )
        )
        return await self.relay_hops(attempt, hops(decision.member), recipients, protected.message)

    async def relay_hops(
        self, attempt: _Try, places: Sequence[Hop], recipients: Sequence[str], body: bytes
    ) -> dict[str, Reply]:
        """Try each hop in order (the gateway's endpoints, then its upstream queues, profile
        §11.1) until one answers; the same pinning rules for every hop."""
        failure = temporary("no-endpoint", "no hop to try", "Peer unreachable")
        for hop in places:
            destination = self.context.peer_destination(hop.host, hop.port, hop.pins)
            try:
                replies = await self._relay(destination, attempt, recipients, body)
            except RelayError as error:
                log.warning("relay of %s to %s deferred: %s", attempt.entry.id, hop.where, error)
                failure = temporary(error.reason, error.detail, "Peer unreachable")
                continue
            if hop.operator is not None:
                detail = f"{hop.where}, run by {hop.operator}: the gateway did not answer"
                attempt.events.append(("upstream-queue", detail))
            return replies
        return _all(recipients, failure)

    @staticmethod
    def _options(
        attempt: _Try,
        decision: Route,
        request: ReceiptRequest | None,
        recipients: Sequence[str],
    ) -> ProtectOptions:
        """Sign with the label (ESS securityLabel), shown on the outer message, and sealed
        for the receiving member and the envelope recipients at it."""
        assert decision.member is not None  # noqa: S101 (a member route)
        label = attempt.classified.label
        marking = None
        if label is not None and label.classification is not None:
            origin = attempt.entry.mail_from or attempt.org.organisation.receipt_address
            marking = protective_marking(label, origin=origin)
        member = decision.member
        return ProtectOptions(
            cipher=decision.cipher,
            receipt_request=request,
            label=label,
            outer_marking=marking,
            inner_encoding=choose_inner_encoding(member),
            sealed_for=SealedFor(member.org_id, tuple(recipients)),
            sender_assurance=sender_assurance(attempt.entry, attempt.body, attempt.provider),
        )

    async def _relay(
        self, destination: Destination, attempt: _Try, recipients: Sequence[str], body: bytes
    ) -> dict[str, Reply]:
        """One attempt at ``destination``; RelayError when it failed as a whole."""
        entry = attempt.entry
        mail_from = "" if entry.kind == "notice" else entry.mail_from
        attempt.relays.update(dict.fromkeys(recipients, f"{destination.host}:{destination.port}"))
        return await self.context.relay.send(destination, mail_from, recipients, body)


def provider_id(directory: Directory | None, org_id: str) -> str | None:
    """``org_id`` if the directory lists it with the ``msp`` role (profile §2.2: only a mail
    service provider writes senderAssurance; another member's would show as unverified)."""
    member = None if directory is None else directory.member(org_id)
    return org_id if member is not None and "msp" in member.roles else None


def sender_assurance(entry: Entry, body: bytes, provider: str | None) -> SenderAssurance | None:
    """The provider's assertion about the holder who submitted ``entry`` (profile §2.2), in
    the provider's name and about the message's From: address; None for mail no holder
    submitted (relayed, notices), from a sender that is not a provider, or an assurance
    record that cannot be read."""
    if entry.kind != "mail" or entry.assurance is None or provider is None:
        return None
    try:
        submitted = Submitted.from_json(entry.assurance)
        return SenderAssurance(
            provider=provider,
            address=addresses.author(body).address,
            login=submitted.login,
            sole_use_since=submitted.sole_use_since,
            identity=submitted.identity,
        )
    except (ValueError, KeyError, TypeError, addresses.AddressError):
        log.warning("entry %s: its sender assurance is unreadable; none is signed", entry.id)
        return None


def asks_for_receipt(message: bytes) -> bool:
    """Whether the sender asked for a receipt: ``Disposition-Notification-To:`` (what mail
    clients set for "request a return receipt", RFC 8098 §2.1) or our own header."""
    head = message.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(b"disposition-notification-to:") or any(
        marker in head
        for marker in (
            b"\r\ndisposition-notification-to:",
            b"\r\nx-securemail-receipt: requested",
        )
    )


def _check_label(classified: Classified) -> Reply | None:
    """A classification SecureMail does not carry is refused, never sent unlabelled."""
    if classified.label is None and classified.unsupported is not None:
        detail = f"the message is marked {classified.unsupported}, which SecureMail does not carry"
        return permanent("marking-unsupported", detail, "5.7.1", "Classification refused")
    return None


def _classification(classified: Classified) -> str:
    label = classified.label
    assert label is not None  # noqa: S101 (called for labelled mail only)
    note = f"; {classified.conflict}" if classified.conflict else ""
    return f"{label.marking} (from {classified.source}){note}"[:500]


def _check_author(body: bytes, org: OrgKeys, kind: str) -> Reply | None:
    """The sending organisation signs only for its own domains (ARCHITECTURE §1, promise 1)."""
    try:
        author = addresses.author(body)
    except addresses.AddressError as error:
        return permanent(error.reason, error.detail, "5.7.1", "From: refused")
    if author.domain not in org.organisation.domains:
        detail = f"From: domain {author.domain} is not one of {org.organisation.org_id}'s"
        return permanent("from-not-authorised", detail, "5.7.1", "From: not authorised")
    return None


def _refused(decision: Route) -> Reply:
    return Reply(
        550, "5.7.1", "Refused by SecureMail policy", decision.reason, decision.explanation
    )


def _all(recipients: Sequence[str], reply: Reply) -> dict[str, Reply]:
    return dict.fromkeys(recipients, reply)
