"""What an upstream queue takes on its peer listener: ciphertext for the members it backs up.

Pure: the directory, the node's ``[upstream]`` settings and the received message in, the
queue entries to write (or the refusal) out. A recipient is backed up when its domain
belongs to an active member named in ``[upstream] backs_up``; the message is then taken
only if it is one ``application/pkcs7-mime`` entity holding an envelope (nothing stored
here can be read), one entry of kind ``upstream`` per member, its ``org_id`` the member
and its ``auth`` the member whose TLS client certificate sent it.

Security: the message is untrusted and stays sealed: it is never decrypted (this node has
no key for it) and a signed-only or clear-signed message, whose content is plaintext, is
refused at DATA (``upstream-ciphertext-only``) rather than stored.
"""

from __future__ import annotations

from securemail import notices
from securemail.config.node import UpstreamSettings
from securemail.config.reasons import UpstreamReason
from securemail.directory.model import Directory, Member
from securemail.queue import Direction, NewMessage
from securemail.receive import Received
from securemail.replies import Reply
from securemail.smime.envelope import is_ciphertext

UPSTREAM = "upstream"  # the queue entry kind
PRIORITY = 0  # SecureMail traffic


def backed_up(
    directory: Directory | None, settings: UpstreamSettings | None, domain: str
) -> Member | None:
    """The active member owning ``domain`` if this node backs it up."""
    if directory is None or settings is None:
        return None
    member = directory.owner_of(domain)
    if member is None or not member.active or member.org_id not in settings.backs_up:
        return None
    return member


def upstream_entries(
    received: Received, directory: Directory | None, settings: UpstreamSettings | None
) -> list[NewMessage] | Reply:
    """One entry per backed-up member among the recipients, or the refusal of the message."""
    by_member: dict[str, list[str]] = {}
    for recipient in received.recipients:
        member = backed_up(directory, settings, recipient.rpartition("@")[2])
        if member is not None:
            by_member.setdefault(member.org_id, []).append(recipient)
    if not by_member:
        return []
    if not is_ciphertext(received.body):
        detail = "an upstream queue stores only an encrypted application/pkcs7-mime entity"
        text = "Only encrypted S/MIME is queued here"
        return Reply(554, "5.7.1", text, UpstreamReason.CIPHERTEXT_ONLY, detail)
    return [
        NewMessage(
            direction=Direction.OUTBOUND,
            org_id=org_id,
            mail_from=received.mail_from,
            recipients=tuple(recipients),
            body=received.body,
            client=f"{received.listener} {received.client_address}",
            message_id=notices.message_id(received.body),
            kind=UPSTREAM,
            auth=received.member,
            priority=PRIORITY,
        )
        for org_id, recipients in by_member.items()
    ]
