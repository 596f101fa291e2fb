"""Recipient binding: a verified message opens only for whom its signature was sealed.

Sign-then-encrypt leaves the signature free to travel (surreptitious forwarding): a genuine
message re-sent in a new SMTP transaction with another RCPT TO, or decrypted by a member
that may read it (or its gateway service provider) and re-encrypted to a third member,
still verifies. The sending gateway therefore signs the sealedFor attribute, naming the
receiving member and the envelope recipients at it; this module decides, from values only,
whether one inbound entry may be delivered.

Rules: the entry's organisation must be the member sealed for (else ``wrong-member``); every
envelope recipient must be named (else ``recipient-not-sealed``). A transaction naming any
recipient the signature does not name is refused whole: a conforming gateway never sends
one, so it is an attack or a broken peer, and the named recipients already have their copy
from the genuine transaction. A signature without the attribute is refused when the signer's
directory entry lists ``sealed-for`` (a downgrade), and otherwise follows ``unsealed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from securemail.config.node import Unsealed
from securemail.smime import SealedFor

RECIPIENT_NOT_SEALED = "recipient-not-sealed"
WRONG_MEMBER = "wrong-member"


class NotSealedError(Exception):
    """The signature does not cover this delivery: quarantined with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_sealed(
    sealed: SealedFor | None,
    *,
    org_id: str,
    recipients: Sequence[str],
    unsealed: Unsealed,
    signer_seals: bool,
) -> bool:
    """True if the signature binds this delivery, False if it is unbound but admitted by
    ``unsealed = "mark"``; raises :class:`NotSealedError` otherwise. ``signer_seals``: the
    signer's directory entry lists ``sealed-for``, so a missing attribute is a downgrade
    (refused whatever ``unsealed`` says)."""
    if sealed is None:
        if unsealed == "mark" and not signer_seals:
            return False
        detail = "the signature names no recipients"
        if signer_seals:
            detail += ", though the signer's directory entry says it always does"
        raise NotSealedError(RECIPIENT_NOT_SEALED, detail)
    if sealed.member != org_id:
        # the detail is for the operator's log; both ids come from the directory's namespace
        detail = f"sealed for member {sealed.member!r}, received for {org_id}"
        raise NotSealedError(WRONG_MEMBER, detail)
    strangers = [r for r in recipients if not sealed.names(r)]
    if strangers:
        detail = f"{len(strangers)} of {len(recipients)} envelope recipients not sealed for"
        raise NotSealedError(RECIPIENT_NOT_SEALED, detail)
    return True
