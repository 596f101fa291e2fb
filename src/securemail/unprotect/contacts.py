"""A holder's answer to an address verification, taken from a verified message.

Mail to an organisation's contacts address (``securemail-contacts@<its first domain>``)
never reaches a mailbox: once the message verified (signature, chain, From: owned by the
signer, recipient binding), its Subject names the verification (``Confirm <id>`` or
``Withdraw <id>``) and its senderAssurance, believed only as the provider's word
(:mod:`securemail.unprotect.assurance`), is the attestation
(:func:`securemail.contacts.model.answer`).

Security: the message is the holder's provider's word about the holder, verified; its
Subject is the holder's text, used only to find the verification, which must be for the
From: address. Nothing is sent back.
"""

from __future__ import annotations

from datetime import datetime

from securemail import addresses
from securemail.contacts.model import answer, read_answer
from securemail.contacts.store import ContactRegister
from securemail.directory.model import Member
from securemail.smime import Unprotected, mime
from securemail.smime.limits import Limits
from securemail.unprotect.assurance import judge_assurance


def take_answer(
    register: ContactRegister,
    opened: Unprotected,
    signer: Member,
    org_id: str,
    now: datetime,
) -> str:
    """Apply the answer ``opened`` carries to its verification; the history line."""
    author = addresses.author(opened.content).address
    block, _ = mime.split_header(opened.content, Limits())
    subject = (mime.field(mime.header_fields(block, Limits()), "Subject") or b"").decode(
        "utf-8", "replace"
    )
    found = read_answer(subject)
    if found is None:
        return f"from {author}: the Subject names no verification"
    action, ident = found
    contact = register.get(ident)
    if contact is None or contact.org_id != org_id:
        return f"from {author}: no verification {ident} here"
    judged = judge_assurance(opened.signature.sender_assurance, signer=signer, author=author)
    verified = None if judged is None else judged.verified
    after = answer(contact, action, author=author, verified=verified, now=now)
    register.save(after)
    return f"{action} {ident} from {author}: {after.note}"
