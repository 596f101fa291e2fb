"""Forwarding what an upstream queue holds to the member's gateway, unchanged and pinned.

Theory of operation. An entry of kind ``upstream`` is claimed by the outbound worker like
any other and handed here (securemail.node.run routes by kind). One attempt tries the
member's own endpoints from the directory in order, each pinned to the member's
``tls_pins`` and shown our client certificate, as a sending gateway would (never another
upstream queue: that could loop). The body goes as it was taken: the sender's encrypted
entity with our trace field on top. Each recipient gets the gateway's reply; a gateway
that does not answer leaves the entry deferred. After ``[upstream] keep_for`` the entry is
given up (``upstream-expired``) and the sender's gateway gets a failure notice.

Security: the body is ciphertext for the member and stays so: nothing here parses or
decrypts it. The gateway is reached only over TLS to a pinned key; never in plaintext.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from securemail.bounces import newly_bounced
from securemail.config.reasons import UpstreamReason
from securemail.policy.routing import Hop, primary_hops
from securemail.queue import Attempt, Entry
from securemail.relay import RelayError
from securemail.replies import Reply, permanent, temporary
from securemail.upstream.context import UpstreamContext
from securemail.upstream.notices import tell_sender

log = logging.getLogger("securemail.upstream")


class Forwarder:
    """Process an upstream queue's entries (kind ``upstream``)."""

    def __init__(self, context: UpstreamContext) -> None:
        self.context = context

    async def process(self, entry: Entry) -> Entry:
        """One attempt to hand ``entry`` to its member's gateway; return the recorded entry."""
        protect = self.context.protect
        now = protect.clock()
        body = await protect.queue.db(protect.queue.manager.body, entry.id)
        relays: dict[str, str] = {}
        results = await self._attempt(entry, body, now, relays)
        recorded = await protect.queue.commits.record(
            Attempt(entry.id, results, holder=entry.claimed_by, relays=tuple(relays.items()))
        )
        failed = newly_bounced(entry, recorded)
        await tell_sender(self.context, entry, failed, body, now, action="failed")
        return recorded

    async def _attempt(
        self, entry: Entry, body: bytes, now: datetime, relays: dict[str, str]
    ) -> dict[str, Reply]:
        pending = entry.pending()
        keep_for = self.context.settings.keep_for
        if now - entry.created_at >= keep_for:
            detail = f"kept {keep_for} and {entry.org_id}'s gateway did not take it"
            reply = permanent(UpstreamReason.EXPIRED, detail, "5.4.7", "Delivery time expired")
            return dict.fromkeys(pending, reply)
        directory = self.context.protect.directory()
        member = None if directory is None else directory.member(entry.org_id)
        if member is None or not member.active or not member.endpoints:
            detail = f"{entry.org_id} has no active directory entry with an endpoint"
            return dict.fromkeys(pending, temporary("no-endpoint", detail, "Peer unreachable"))
        return await self._send(entry, body, pending, primary_hops(member), relays)

    async def _send(
        self,
        entry: Entry,
        body: bytes,
        pending: Sequence[str],
        hops: Sequence[Hop],
        relays: dict[str, str],
    ) -> dict[str, Reply]:
        protect = self.context.protect
        failure = temporary("no-endpoint", "no endpoint to try", "Peer unreachable")
        for hop in hops:
            destination = protect.peer_destination(hop.host, hop.port, hop.pins)
            relays.update(dict.fromkeys(pending, hop.where))
            try:
                return await protect.relay.send(destination, entry.mail_from, pending, body)
            except RelayError as error:
                log.info("upstream entry %s: %s did not take it: %s", entry.id, hop.where, error)
                failure = temporary(error.reason, error.detail, "Peer unreachable")
        return dict.fromkeys(pending, failure)
