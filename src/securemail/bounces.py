"""Failure and delay notices: tell a sender what happened, through the ordinary queue.

A notice is itself queued mail (kind ``notice``) so it is as durable as anything else:
- the sender is one of our own users (outbound mail failed): the notice is signed by the
  organisation and queued for local delivery to the sender's mailbox;
- the sender is at another member (inbound mail refused or undeliverable here): the notice
  is queued outbound to the sender's gateway, which the protect service signs and encrypts.
A notice never carries the original body (headers only), and no notice is ever sent about a
notice or about mail from the null sender ``<>`` (RFC 3464 §2, THREATS.md A: no loops).

Security (THREATS.md K, signed backscatter): a notice is text under our signature, so it goes
only to a sender somebody vouched for. Outbound mail's sender is our own user or internal
relay; inbound mail's sender is vouched for only by the inbound service, after the message
verified and the signer's directory entry was found to own both the envelope sender's and
the From: domain: it then records a ``sender-vouched`` event holding the signed routing
fields, and a notice about that entry quotes those fields and nothing else. Inbound mail
without that event (malformed, undecryptable, unverified, or a sender its signer does not
own) gets no notice at all: it is quarantined and logged, and nothing is sent.

The outbound and inbound workers and the node's notice loops (delay warnings, receipt
windows) queue notices through one :class:`NoticeContext`, built by the composition root.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from securemail import notices
from securemail.config.node import Organisation
from securemail.keys.org import OrgKeys
from securemail.queue import Direction, Disposition, Entry, NewMessage
from securemail.queue.access import QueueAccess
from securemail.smime import clear_sign

log = logging.getLogger("securemail.notices")


@dataclass(frozen=True)
class NoticeContext:
    """What writing and queuing a notice uses."""

    reporting_mta: str  # this node's name (RFC 3464 Reporting-MTA)
    orgs: Mapping[str, OrgKeys]  # org_id -> the organisation's keys (notices are signed)
    organisation_for: Callable[[str], Organisation | None]  # a domain's organisation here
    queue: QueueAccess
    clock: Callable[[], datetime]

    def org_for(self, address: str) -> OrgKeys | None:
        """The keys of the organisation here that serves ``address``, if any."""
        org = self.organisation_for(address.rpartition("@")[2])
        return None if org is None else self.orgs.get(org.org_id)


def newly_bounced(before: Entry, after: Entry) -> list[notices.Failed]:
    """Recipients that were pending before this attempt and are bounced after it."""
    pending = set(before.pending())
    return [
        notices.Failed(
            r.address,
            # RFC 3463 §3.5: 4.4.7, the message's delivery time expired
            "4.4.7" if r.reason == "expired" else _status(r.last_reply, "5.0.0"),
            r.reason or "failed",
            r.last_reply or "",
        )
        for r in after.recipients
        if r.address in pending and r.disposition is Disposition.BOUNCED
    ]


def _status(reply: str | None, default: str) -> str:
    parts = (reply or "").split()
    if len(parts) > 1 and parts[1][:1] in "245" and parts[1].count(".") == 2:
        return parts[1]
    return default


async def bounce_newly_failed(
    context: NoticeContext, before: Entry, after: Entry, body: bytes, now: datetime
) -> None:
    """Queue a failure notice for the recipients this attempt bounced, if any."""
    failed = newly_bounced(before, after)
    if failed:
        await send_notice(context, before, failed, body, now, action="failed")


VOUCHED = "sender-vouched"  # the event that lets a notice about inbound mail be sent


async def quotable_header(context: NoticeContext, entry: Entry, body: bytes) -> bytes | None:
    """The header a notice about ``entry`` may quote; None if no notice may be sent at all.

    Outbound: the header our own sender wrote. Inbound: the signed routing fields the inbound
    service recorded when it vouched for the sender, never the unsigned outer header.
    """
    if entry.direction is Direction.OUTBOUND:
        return notices.original_header(body)
    vouched = await context.queue.db(context.queue.manager.event_details, entry.id, VOUCHED)
    if not vouched:
        return None
    return notices.original_header(vouched[-1].encode("utf-8"))


async def send_notice(
    context: NoticeContext,
    entry: Entry,
    failed: Sequence[notices.Failed],
    body: bytes,
    now: datetime,
    *,
    action: Literal["failed", "delayed"],
) -> str | None:
    """Queue a notice about ``entry`` to its sender; None when no notice may be sent."""
    quoted = await quotable_header(context, entry, body)
    if quoted is None:
        log.warning(
            "no %s notice for %s: its sender was not vouched for by a verified signature",
            action,
            entry.id,
        )
        return None
    found = local_notice(context, entry, failed, quoted, now, action=action)
    if not found:
        return None
    [new] = found
    queue = context.queue
    entry_id = await queue.commits.enqueue(new)
    await queue.db(
        queue.manager.add_event, entry.id, f"notice-{action}", now, detail=f"notice {entry_id}"
    )
    queue.notify(new.direction)
    return entry_id


def local_notice(
    context: NoticeContext,
    entry: Entry,
    failed: Sequence[notices.Failed],
    quoted: bytes,
    now: datetime,
    *,
    action: Literal["failed", "delayed"],
) -> list[NewMessage]:
    """The notice about ``entry`` to its sender, ready to queue; none for ``<>`` or a notice.

    ``quoted`` is what :func:`quotable_header` allows the notice to quote.
    """
    # Ordinary mail's sender is unverified: a notice could go to a forged address
    # (backscatter). Its failures are in the queue's history for the operator.
    if entry.kind in ("notice", "ordinary") or not entry.mail_from:
        log.info("no %s notice for %s: null sender or a notice itself", action, entry.id)
        return []
    org = context.orgs.get(entry.org_id)
    if org is None:
        return []
    notice = notices.failure_notice(
        original_header=quoted,
        reporting_mta=context.reporting_mta,
        postmaster=f"postmaster@{org.organisation.domains[0]}",
        to=entry.mail_from,
        failed=failed,
        now=now,
        action=action,
        message_id_domain=org.organisation.domains[0],
    )
    return [_notice_message(context, org, entry, notice, now)]


def to_own_user(org: OrgKeys, address: str, report: bytes, now: datetime) -> NewMessage:
    """A report for one of ``org``'s own users, clear-signed, queued for local delivery."""
    signed = clear_sign(report, org.signer, now=now)
    return NewMessage(
        Direction.INBOUND,
        org.organisation.org_id,
        "",
        (address,),
        signed,
        client="local",
        kind="notice",
    )


def _notice_message(
    context: NoticeContext, org: OrgKeys, entry: Entry, notice: bytes, now: datetime
) -> NewMessage:
    sender_org = context.org_for(entry.mail_from)
    if entry.direction is Direction.OUTBOUND and sender_org is not None:
        return to_own_user(sender_org, entry.mail_from, notice, now)
    return NewMessage(
        Direction.OUTBOUND,
        org.organisation.org_id,
        "",
        (entry.mail_from,),
        notice,
        client="local",
        kind="notice",
    )
