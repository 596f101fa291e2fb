"""An upstream queue's delay and failure notices to the original sender's gateway.

The queue cannot read what it holds, so it cannot check a signature; it vouches for an
envelope sender by the TLS client certificate that delivered the message instead: a notice
goes only to a sender whose domain belongs to the member that certificate is pinned for
(``Entry.auth``). The notice quotes the outer header that member's gateway wrote, is signed
by the queue's operator organisation and, like all mail to a member, encrypted to the
sender's gateway by the outbound worker (profile §11.1, §13).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from securemail import notices
from securemail.queue import Direction, Entry, NewMessage
from securemail.upstream.context import UpstreamContext

log = logging.getLogger("securemail.upstream")


def vouched(context: UpstreamContext, entry: Entry) -> bool:
    """Whether the member that handed us ``entry`` owns its envelope sender's domain."""
    directory = context.protect.directory()
    member = None if directory is None or entry.auth is None else directory.member(entry.auth)
    domain = entry.mail_from.rpartition("@")[2].lower()
    return bool(entry.mail_from) and member is not None and domain in member.domains


async def tell_sender(
    context: UpstreamContext,
    entry: Entry,
    failed: Sequence[notices.Failed],
    body: bytes,
    now: datetime,
    *,
    action: Literal["failed", "delayed"],
) -> str | None:
    """Queue a signed notice about ``entry`` to its sender; None if none may be sent."""
    if not failed or not vouched(context, entry):
        log.info("no %s notice for upstream entry %s: sender not vouched", action, entry.id)
        return None
    organisation = context.reporter.organisation
    notice = notices.failure_notice(
        original_header=notices.original_header(body),
        reporting_mta=context.protect.helo,
        postmaster=f"postmaster@{organisation.domains[0]}",
        to=entry.mail_from,
        failed=failed,
        now=now,
        action=action,
        message_id_domain=organisation.domains[0],
        arrived=entry.created_at,
    )
    new = NewMessage(
        Direction.OUTBOUND,
        organisation.org_id,
        "",
        (entry.mail_from,),
        notice,
        client="local",
        kind="notice",
    )
    queue = context.protect.queue
    notice_id = await queue.commits.enqueue(new)
    await queue.db(
        queue.manager.add_event, entry.id, f"notice-{action}", now, detail=f"notice {notice_id}"
    )
    queue.notify(Direction.OUTBOUND)
    return notice_id
