"""A message written in the browser: form fields in, checked recipients and RFC 5322 bytes out.

Theory of operation. :func:`recipients` parses each To/Cc entry on its own with the gateway's
strict mailbox parser (one mailbox, no group, no list, no encoded-word in the address);
:func:`reach` asks the routing policy, per recipient, whether it is a SecureMail member and
whether this message may go there; :func:`build` writes the message with the standard
library's SMTP policy. The classification is written as the gateway reads it
(:mod:`securemail.policy.labels`): an ``X-Protective-Marking`` field and the Subject form,
then read back with :func:`classify`, so a Subject that already claims another marking is
refused rather than silently sent at a different classification.

Security: every form field is untrusted. A CR, LF or other control character in an address
or the Subject is refused (header injection), never stripped; attachments are capped in
total and their names reduced to a safe set. From: is only ever one of the account's own
addresses. Pure: no I/O, the time is passed in.
"""

from __future__ import annotations

import email.policy
import email.utils
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from enum import StrEnum

from securemail import addresses
from securemail.accounts.model import Account
from securemail.directory.model import Directory
from securemail.errors import SecureMailError
from securemail.policy.labels import classify, protective_marking, subject_marking
from securemail.policy.model import NodePolicy, OrgPolicy
from securemail.policy.routing import RouteKind, RouteReason, route
from securemail.smime.labels import CLASSIFICATIONS, SecurityLabel
from securemail.web.reading import Reading, safe_filename
from securemail.web.verification import author_of

PRIVACY_MARKS = ("PERSONAL",)  # the privacy marks SecureMail reads and writes (issue 7)
MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 20 * 1024 * 1024  # octets in total, before encoding
MAX_SUBJECT = 200  # characters
_MAX_BODY = 1024 * 1024  # characters of text


class ComposeReason(StrEnum):
    """Why a composed message was refused (shown to the writer, stable for logs)."""

    HEADER_INJECTION = "header-injection"
    BAD_ADDRESS = "bad-address"
    NO_RECIPIENTS = "no-recipients"
    TOO_MANY_RECIPIENTS = "too-many-recipients"
    FROM_NOT_OWNED = "from-not-owned"
    BAD_LABEL = "bad-label"
    LABEL_CONFLICT = "label-conflict"
    TOO_BIG = "message-too-big"
    BAD_REFERENCE = "bad-reference"


class ComposeError(SecureMailError[ComposeReason]):
    """A form the webmail will not turn into a message; ``detail`` is safe to show."""


@dataclass(frozen=True)
class Upload:
    """One attached file as the browser sent it."""

    filename: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class Draft:
    """The compose form, as typed (nothing checked yet)."""

    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str
    bcc: tuple[str, ...] = ()
    classification: str = ""  # "" or one of CLASSIFICATIONS
    privacy: str = ""  # "" or one of PRIVACY_MARKS
    receipt: bool = False
    attachments: tuple[Upload, ...] = ()
    in_reply_to: str = ""


@dataclass(frozen=True)
class Reach:
    """Whether one recipient is inside SecureMail, and whether this message may go there."""

    address: str
    member: bool
    allowed: bool
    explanation: str


@dataclass(frozen=True)
class Composed:
    """A message ready for the queue."""

    message: bytes
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    label: SecurityLabel | None


def split_addresses(text: str) -> tuple[str, ...]:
    """The entries of one recipients field: split at commas, semicolons and line ends
    outside quotes and angle brackets (``"Walker, Hemi" <hemi@…>, aroha@…`` is two)."""
    entries: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in text:
        if char == '"' and not angle:
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        if char in ",;\r\n" and not quoted and not angle:
            entries.append("".join(current))
            current = []
            continue
        current.append(char)
    entries.append("".join(current))
    return tuple(e.strip() for e in entries if e.strip())


def recipients(entries: Sequence[str]) -> tuple[str, ...]:
    """The address of each non-empty entry, each entry exactly one mailbox."""
    found: list[str] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        _refuse_controls(text, "address")
        try:
            mailbox = addresses.parse_mailbox(text.encode("utf-8"), smtputf8=False)
        except addresses.AddressError as error:
            detail = f"{text[:80]!r} is not exactly one plain address ({error.reason.value})"
            raise ComposeError(ComposeReason.BAD_ADDRESS, detail) from None
        found.append(mailbox.address)
    return tuple(dict.fromkeys(found))


def label_of(draft: Draft) -> SecurityLabel | None:
    """The label chosen in the form, or None for an unlabelled message."""
    if draft.classification and draft.classification not in CLASSIFICATIONS:
        raise ComposeError(ComposeReason.BAD_LABEL, "unknown classification")
    if draft.privacy and draft.privacy not in PRIVACY_MARKS:
        raise ComposeError(ComposeReason.BAD_LABEL, "unknown privacy mark")
    if not draft.classification and not draft.privacy:
        return None
    return SecurityLabel(draft.classification or None, draft.privacy or None)


def reach(
    addresses_: Sequence[str],
    *,
    sender_org: str,
    directory: Directory | None,
    smarthost: bool,
    now: datetime,
    label: SecurityLabel | None,
    org_policy: OrgPolicy,
    node_policy: NodePolicy,
) -> list[Reach]:
    """Per recipient: inside SecureMail or not, and whether the routing policy lets it go."""
    found = []
    for address in addresses_:
        decision = route(
            address.rpartition("@")[2],
            sender_org=sender_org,
            directory=directory,
            smarthost=smarthost,
            now=now,
            label=label,
            org_policy=org_policy,
            node_policy=node_policy,
        )
        member = decision.member is not None and decision.reason is not RouteReason.MEMBER_SUSPENDED
        allowed = decision.kind is not RouteKind.REFUSE
        found.append(Reach(address, member, allowed, decision.explanation))
    return found


def build(draft: Draft, *, account: Account, now: datetime, for_drafts: bool = False) -> Composed:
    """The message for ``draft`` from ``account`` (see the module doc for what is refused).

    Bcc recipients are in ``recipients`` (the envelope) but not in the message; with
    ``for_drafts`` (the copy kept in Drafts) they are written in a Bcc: field so the draft
    keeps them, and no recipient is needed yet."""
    if not account.owns(draft.sender):
        raise ComposeError(ComposeReason.FROM_NOT_OWNED, "From: must be one of your addresses")
    to, cc, bcc = recipients(draft.to), recipients(draft.cc), recipients(draft.bcc)
    everyone = tuple(dict.fromkeys(to + cc + bcc))
    if not everyone and not for_drafts:
        raise ComposeError(ComposeReason.NO_RECIPIENTS, "add at least one recipient")
    if len(everyone) > MAX_RECIPIENTS:
        raise ComposeError(ComposeReason.TOO_MANY_RECIPIENTS, f"at most {MAX_RECIPIENTS}")
    label = label_of(draft)
    message_id = f"<{secrets.token_hex(16)}@{draft.sender.rpartition('@')[2]}>"
    message = _message(draft, account, (to, cc), label, (message_id, now))
    if for_drafts and bcc:
        message = f"Bcc: {', '.join(bcc)}\r\n".encode() + message
    _check_label(message, label, draft.sender)
    return Composed(message, draft.sender, everyone, message_id, label)


def _message(
    draft: Draft,
    account: Account,
    to_cc: tuple[tuple[str, ...], tuple[str, ...]],
    label: SecurityLabel | None,
    identity: tuple[str, datetime],
) -> bytes:
    (to, cc), (message_id, now) = to_cc, identity
    subject = _subject(draft.subject, label)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = Address(_display(account.display_name), addr_spec=draft.sender)
    message["To"] = ", ".join(to) if to else "undisclosed-recipients:;"  # Bcc only: RFC 5322
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = message_id
    if draft.in_reply_to:
        reference = _reference(draft.in_reply_to)
        message["In-Reply-To"] = reference
        message["References"] = reference
    if label is not None:
        message["X-Protective-Marking"] = protective_marking(label, origin=draft.sender)
    if draft.receipt:  # RFC 8098 §2.1; the gateway turns it into a signed ESS receipt request
        message["Disposition-Notification-To"] = draft.sender
    if len(draft.body) > _MAX_BODY:
        raise ComposeError(ComposeReason.TOO_BIG, "the text is too long")
    message.set_content(draft.body, cte="quoted-printable")
    _attach(message, draft.attachments)
    return message.as_bytes()


def _subject(text: str, label: SecurityLabel | None) -> str:
    _refuse_controls(text, "Subject")
    subject = " ".join(text.split())[:MAX_SUBJECT]
    if label is None:
        return subject
    marking = subject_marking(label)
    return subject if marking in subject else f"{subject} {marking}".strip()


def _attach(message: EmailMessage, uploads: tuple[Upload, ...]) -> None:
    if sum(len(u.content) for u in uploads) > MAX_ATTACHMENTS:
        raise ComposeError(ComposeReason.TOO_BIG, f"attachments over {MAX_ATTACHMENTS} octets")
    for upload in uploads:
        main, _, sub = upload.media_type.lower().partition("/")
        if not (
            main.isascii()
            and main.isalpha()
            and sub
            and all(c.isalnum() or c in ".+-" for c in sub)
        ):
            main, sub = "application", "octet-stream"
        name = safe_filename(upload.filename)
        message.add_attachment(upload.content, maintype=main, subtype=sub, filename=name)


def _check_label(message: bytes, label: SecurityLabel | None, sender: str) -> None:
    """The gateway must read back exactly the label chosen (fail closed on a Subject claim)."""
    read = classify(message, OrgPolicy(), sender=sender)
    if read.label != label or read.unsupported is not None:
        raise ComposeError(
            ComposeReason.LABEL_CONFLICT,
            "the Subject carries a marking that differs from the classification chosen",
        )


def _refuse_controls(text: str, what: str) -> None:
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        raise ComposeError(
            ComposeReason.HEADER_INJECTION, f"line breaks or control characters in {what}"
        )


def _display(name: str) -> str:
    return "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))


def _reference(value: str) -> str:
    text = value.strip()
    if not (text.startswith("<") and text.endswith(">") and 3 <= len(text) <= 250):
        raise ComposeError(ComposeReason.BAD_REFERENCE, "not a Message-ID")
    if any(c in text[1:-1] for c in "<> \t\r\n") or not text.isascii() or not text.isprintable():
        raise ComposeError(ComposeReason.BAD_REFERENCE, "not a Message-ID")
    return text


def reopen(reading: Reading, draft: Draft) -> Draft:
    """``draft`` filled from a message kept in Drafts (its recipients, Subject and text)."""
    bcc = next((v.decode("utf-8", "replace") for n, v in reading.fields if n.lower() == "bcc"), "")
    return replace(
        draft,
        to=split_addresses(reading.to),
        cc=split_addresses(reading.cc),
        bcc=split_addresses(bcc),
        subject=reading.subject,
        body=reading.text or "",
    )


def answer(reading: Reading, draft: Draft, *, forward: bool) -> Draft:
    """``draft`` prefilled as a reply to (or a forward of) ``reading``."""
    text = reading.text or ""
    if forward:
        subject = _prefixed("Fwd: ", reading.subject)
        intro = f"From: {reading.sender}\nDate: {reading.date}\nSubject: {reading.subject}"
        body = f"\n\n---------- Forwarded message ----------\n{intro}\n\n{text}"
        return replace(draft, subject=subject, body=body)
    quoted = "\n".join("> " + line for line in text.splitlines())
    author = author_of(reading.fields)
    return replace(
        draft,
        to=(author,) if author else (),
        subject=_prefixed("Re: ", reading.subject),
        body=f"\n\n{reading.sender} wrote:\n{quoted}\n",
        in_reply_to=reading.message_id,
    )


def _prefixed(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else prefix + subject
