"""Mail for one of the node's organisations that waits for its key (``key-unavailable``).

A message this node cannot decrypt is, as a rule, refused and quarantined (``not-for-us``:
it was meant for another gateway, or is broken). One exception: the message is for one of
the node's own organisations, encrypted to a certificate the directory lists for it, and
the matching private key is simply not installed here (a gateway rebuilt before ``keys
restore``, or a next key published before ``install-next``). Bouncing or quarantining it
would lose mail the organisation can read once its key is back, so it is held instead and
the operator is alerted; the key watch (securemail.node.keyring) releases it when the key
is installed, and after ``[keys] hold_without_key`` it takes the normal failure path.

Security: holding decrypts nothing and sends nothing; the envelope is read only to see
which certificates it names (securemail.smime.envelope). Mail for another gateway still
goes to quarantine.
"""

from __future__ import annotations

import logging
from datetime import datetime

from securemail.config.reasons import HoldReason
from securemail.queue import Entry
from securemail.smime.envelope import addressed_to
from securemail.unprotect.context import UnprotectContext

log = logging.getLogger("securemail.unprotect")


def waits_for_key(context: UnprotectContext, entry: Entry, body: bytes, now: datetime) -> bool:
    """Whether ``entry`` (which could not be opened) is held rather than refused."""
    if entry.org_id not in context.expected or now - entry.created_at >= context.hold_without_key:
        return False
    if entry.kind != "mail":  # ordinary mail, our own notices: they need the keys loaded only
        return entry.org_id not in context.orgs
    directory = context.directory()
    member = None if directory is None else directory.member(entry.org_id)
    return member is not None and addressed_to(body, member.encryption.all())


async def hold_for_key(context: UnprotectContext, entry: Entry, now: datetime) -> Entry:
    """Hold ``entry`` as ``key-unavailable`` and say so (the queue event is the alert)."""
    detail = f"{entry.org_id}'s decryption key for this message is not installed here"
    log.error("held %s: %s: %s", entry.id, HoldReason.KEY_UNAVAILABLE, detail)
    queue = context.queue
    return await queue.db(queue.holds.hold_for_key, entry.id, detail, now, holder=entry.claimed_by)
