"""Admission: what the listeners ask the node (may this recipient be taken?) and how
accepted mail enters the queue (``250`` only after the queue transaction committed).

Security: the relay listener's recipient check is the open-relay guard: a recipient is
taken only if the routing policy has a way to reach it (a member, or the smarthost the
operator configured); the peer and ordinary listeners take only recipients in domains this
node serves. The submission listener asks the same question but its refusals are written for
the person at the mail program (:func:`for_people`: "Not sent to …: … is not a SecureMail
member …"), and its mail's classification is checked against every recipient at DATA, so a
label that may not go somewhere is refused there rather than bounced later.
Mail from the ordinary listener is queued as kind "ordinary", which the inbound
service never unprotects or marks verified; ordinary mail to a receipt address is refused.

The peer listener knows a member by its TLS client certificate: the directory pins the
key (:meth:`Admission.member_of`), or an upstream queue's key, which forwards a member's
mail to its gateway. On an upstream queue node (``[upstream] backs_up``) the peer listener
also takes mail for the members it backs up, as ciphertext only (securemail.upstream
.intake). A source whose peer mail was quarantined more than ``[peer] quarantine_quota``
times in the last hour gets 451 at DATA (THREATS.md K): it cannot grow the store without
bound, and a member that misbehaves only waits.

SecureMail traffic is dequeued ahead of ordinary traffic when both wait (issue 7 §4): mail
from the ordinary listener, and outbound mail whose every recipient goes to the smarthost,
are queued with priority 1; everything else with 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from securemail import addresses, notices
from securemail.config.node import NodeConfig
from securemail.directory.model import Directory, certificate_pin
from securemail.evidence import EvidenceReason
from securemail.policy.labels import classify
from securemail.policy.model import OrgPolicy
from securemail.policy.routing import Route, RouteKind, RouteReason, route
from securemail.queue import Direction, NewMessage, QueueError
from securemail.queue.access import QueueAccess
from securemail.receive import Received
from securemail.receive.door import SourceQuota
from securemail.receive.flow import InFlow
from securemail.receive.model import ReceiveReason
from securemail.replies import Reply, ok, temporary
from securemail.smime.labels import SecurityLabel
from securemail.structured.message import may_carry
from securemail.structured.schema import installed
from securemail.structured.submission import admit_document
from securemail.upstream.intake import backed_up, upstream_entries

SECUREMAIL, ORDINARY = 0, 1  # queue priorities: lower is claimed first
_QUOTA_FRESH = timedelta(seconds=1)  # how long a source's quarantine count is reused
_QUOTA_SOURCES = 10_000  # sources whose counts are kept at most

log = logging.getLogger("securemail.receive")


@dataclass(frozen=True)
class AdmissionContext:
    """What the listeners' admission uses: the served domains and routes, and the queue."""

    config: NodeConfig  # domains, organisations, smarthost
    directory: Callable[[], Directory | None]  # the current verified directory
    queue: QueueAccess
    clock: Callable[[], datetime]
    # how much peer mail from one source may end quarantined (receive.door)
    quarantined: SourceQuota = field(default_factory=lambda: SourceQuota(None))


class Admission:
    """The node's answers to its listeners."""

    def __init__(self, context: AdmissionContext) -> None:
        self.context = context
        self._quota_seen: dict[str, tuple[datetime, bool]] = {}  # client: (when, over)
        # one pause before MAIL for all of this process's listeners (receive.flow)
        self.inflow = InFlow(context.config.in_flow, self._waiting)

    async def _waiting(self) -> int:
        queue = self.context.queue
        return int(await queue.db(queue.manager.waiting))

    def member_of(self, certificate: bytes) -> str | None:
        """The active member whose directory entry pins the key of ``certificate`` (DER)."""
        directory = self.context.directory()
        try:
            pin = certificate_pin(certificate)
        except ValueError:
            return None
        if directory is None:
            return None
        found = (m.org_id for m in directory.members if m.active and pin in m.tls_pins)
        return next(found, None) or directory.upstream_operator(pin)

    def serves(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.context.config.domains

    def serves_peer(self, domain: str) -> bool:
        """The peer listener's domains: this node's, and those of members it backs up."""
        if self.serves(domain):
            return True
        upstream = self.context.config.upstream
        return backed_up(self.context.directory(), upstream, domain) is not None

    def sender_allowed(self, address: str) -> bool:
        return self.serves(address.rpartition("@")[2])

    def check_recipient(self, mail_from: str, recipient: str) -> Reply | None:
        """None if the relay may take ``recipient``; else the refusal (not an open relay)."""
        decision = self._route(self._sender_org(mail_from), recipient)
        if decision.kind is RouteKind.REFUSE:
            return Reply(550, "5.7.1", "Relay not permitted", decision.reason, decision.explanation)
        return None

    def check_submission_recipient(self, mail_from: str, recipient: str) -> Reply | None:
        """As :meth:`check_recipient`, for a person's mail program: the refusal says why in
        words (:func:`for_people`), with the same code, enhanced code and reason code."""
        decision = self._route(self._sender_org(mail_from), recipient)
        if decision.kind is RouteKind.REFUSE:
            return for_people(recipient, decision)
        return None

    def check_submission_label(self, received: Received) -> Reply | None:
        """None if the label of submitted mail may go to every recipient, else the refusal
        in words, at DATA, rather than a failure notice after it was accepted."""
        sender = received.mail_from or _author_address(received.body)
        org = self.context.config.organisation_for(sender.rpartition("@")[2])
        org = org or self.context.config.organisations[0]
        label = classify(received.body, org.policy, sender=sender).label
        if label is None:
            return None
        for recipient in received.recipients:
            decision = self._route(org.org_id, recipient, label=label, org_policy=org.policy)
            if decision.kind is RouteKind.REFUSE:
                return for_people(recipient, decision)
        return None

    def _route(
        self,
        org_id: str,
        recipient: str,
        *,
        label: SecurityLabel | None = None,
        org_policy: OrgPolicy | None = None,
    ) -> Route:
        return route(
            recipient.rpartition("@")[2],
            sender_org=org_id,
            directory=self.context.directory(),
            smarthost=self.context.config.smarthost is not None,
            now=self.context.clock(),
            label=label,
            org_policy=org_policy or OrgPolicy(),
            node_policy=self.context.config.node_policy,
        )

    def _sender_org(self, mail_from: str) -> str:
        org = self.context.config.organisation_for(mail_from.rpartition("@")[2])
        return (org or self.context.config.organisations[0]).org_id

    async def admit_outbound(self, received: Received) -> Reply:
        if received.listener == "submission" and (refusal := self.check_submission_label(received)):
            return refusal
        sender = received.mail_from or _author_address(received.body)
        schemas = installed(self.context.config.structured.ubl_schemas)
        checked: bytes | Reply = received.body
        # Only mail that may carry a document goes to a thread to be validated: the scan
        # costs the loop a few percent of what reading the same lines cost it, a thread hop
        # per message about 0.1 ms of CPU and a wait for the GIL.
        if may_carry(received.body):
            checked = await asyncio.to_thread(admit_document, received.body, sender, schemas)
        if isinstance(checked, Reply):
            return checked
        received = dataclasses.replace(received, body=checked)
        org = self._sender_org(sender)
        message = _new(received, Direction.OUTBOUND, org, priority=self._priority(org, received))
        return await self._enqueue([message])

    def _priority(self, org_id: str, received: Received) -> int:
        """ORDINARY if every recipient leaves through the smarthost, else SECUREMAIL."""
        kinds = {self._route(org_id, r).kind for r in received.recipients}
        return ORDINARY if kinds == {RouteKind.SMARTHOST} else SECUREMAIL

    async def admit_inbound(self, received: Received) -> Reply:
        """One entry per receiving organisation (a GSP node serves several)."""
        if await self._over_quarantine_quota(received):
            detail = f"{received.client_address} is over its quarantine quota"
            text = "Too much refused mail from your address, try again later"
            return Reply(451, "4.7.1", text, ReceiveReason.QUARANTINE_QUOTA, detail)
        upstream = upstream_entries(
            received, self.context.directory(), self.context.config.upstream
        )
        if isinstance(upstream, Reply):
            return upstream
        return await self._enqueue(self._inbound(received, "mail", SECUREMAIL) + upstream)

    async def admit_ordinary(self, received: Received) -> Reply:
        """Mail from outside SecureMail: like inbound, as kind "ordinary" with priority 1.

        Refused (550 5.7.1) if it is addressed to a receipt address: receipts come only
        through SecureMail, and nothing else may reach that mailbox.
        """
        if any(self._is_receipt_address(r) for r in received.recipients):
            detail = "ordinary mail to the receipt address"
            reason = EvidenceReason.WRONG_KIND
            return Reply(550, "5.7.1", "Mailbox unavailable", reason, detail)
        return await self._enqueue(self._inbound(received, "ordinary", ORDINARY))

    async def _over_quarantine_quota(self, received: Received) -> bool:
        """Whether the source's peer mail quarantined within the window reached the quota.

        The count is the queue's; one source's answer is kept for a second, so a busy
        peer costs one read a second, not one per message (its mail quarantined in that
        second counts from the next)."""
        quota, now = self.context.quarantined, self.context.clock()
        if quota.limit is None:
            return False
        client = f"{received.listener} {received.client_address}"
        known = self._quota_seen.get(client)
        if known is not None and timedelta(0) <= now - known[0] < _QUOTA_FRESH:
            return known[1]
        queue = self.context.queue
        count = await queue.db(queue.manager.quarantined_from, client, now - quota.window)
        if len(self._quota_seen) > _QUOTA_SOURCES:
            self._quota_seen.clear()  # bounded: many sources only cost more reads
        self._quota_seen[client] = (now, quota.exceeded_by(count))
        return self._quota_seen[client][1]

    def _is_receipt_address(self, address: str) -> bool:
        org = self.context.config.organisation_for(address.rpartition("@")[2])
        return org is not None and address.lower() == org.receipt_address

    def _inbound(self, received: Received, kind: str, priority: int) -> list[NewMessage]:
        by_org: dict[str, list[str]] = {}
        for recipient in received.recipients:
            org = self.context.config.organisation_for(recipient.rpartition("@")[2])
            if org is not None:
                by_org.setdefault(org.org_id, []).append(recipient)
        return [
            _new(
                received, Direction.INBOUND, org_id, tuple(recipients), kind=kind, priority=priority
            )
            for org_id, recipients in by_org.items()
        ]

    async def _enqueue(self, messages: list[NewMessage]) -> Reply:
        try:
            ids = [await self.context.queue.commits.enqueue(m) for m in messages]
        except QueueError as error:
            log.error("queue refused a message: %s", error)
            return temporary(error.reason, error.detail, "Queue unavailable, try again later")
        for message in messages:
            self.context.queue.notify(message.direction)
        return ok(f"Queued as {' '.join(ids)}")


_FOR_PEOPLE = {
    RouteReason.NOT_A_MEMBER: (
        "{domain} is not a SecureMail member, and this service sends only to SecureMail members"
    ),
    RouteReason.MEMBER_SUSPENDED: "{domain} belongs to an organisation suspended from SecureMail",
    RouteReason.LABEL_REQUIRES_SECUREMAIL: (
        "the message's classification may go only to SecureMail members, and {domain} is not one"
    ),
    RouteReason.REGION_NOT_ALLOWED: (
        "your organisation does not allow classified mail to where {domain} stores its mail"
    ),
    RouteReason.NODE_OFFSHORE: (
        "this service is outside New Zealand and may not carry classified mail"
    ),
}


def for_people(recipient: str, decision: Route) -> Reply:
    """A refusal a person reads in their mail program: ``550 5.7.1 Not sent to <address>:
    <why> (<reason code>)``; ASCII only (an internationalised address is not repeated)."""
    domain = decision.domain if decision.domain.isascii() else "the recipient's domain"
    why = _FOR_PEOPLE.get(decision.reason, decision.explanation).format(domain=domain)
    who = recipient if recipient.isascii() and recipient.isprintable() else "this recipient"
    text = f"Not sent to {who}: {why} ({decision.reason.value})"
    return Reply(550, "5.7.1", text, decision.reason, decision.explanation)


def _author_address(body: bytes) -> str:
    try:
        return addresses.author(body).address
    except addresses.AddressError:
        return ""


def _new(
    received: Received,
    direction: Direction,
    org_id: str,
    recipients: tuple[str, ...] | None = None,
    *,
    kind: str = "mail",
    priority: int = SECUREMAIL,
) -> NewMessage:
    return NewMessage(
        direction=direction,
        org_id=org_id,
        mail_from=received.mail_from,
        recipients=recipients or received.recipients,
        body=received.body,
        client=f"{received.listener} {received.client_address}",
        message_id=notices.message_id(received.body),
        kind=kind,
        auth=received.auth_user,
        priority=priority,
        assurance=None if received.assurance is None else received.assurance.to_json(),
    )
