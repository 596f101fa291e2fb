"""The holder's side of address verification: what they confirmed, read from their own mail.

A holder's provider keeps no register of the verifications its holders answer: the
agency does. What the holder has is their mail: the agency's request in the Inbox
(``Please confirm your address for <purpose> [<id>]`` from ``securemail-contacts@…``)
and their answers in Sent (``Confirm <id>``, later ``Withdraw <id>``). From these heads
alone this module says which verifications stand confirmed, for which organisation,
purpose and since when.

Security: the heads are the holder's own mail; only their Subject, From, To and Date are
read, and an id is only ever used as the subject of a new answer to the same address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from securemail.contacts.model import LOCAL_PART, read_answer

_REQUEST = re.compile(r"for (.+) \[([A-Za-z0-9_-]{16,64})\]\s*$")


@dataclass(frozen=True)
class Head:
    """The fields of one message this module reads."""

    sender: str
    to: str
    subject: str
    date: datetime


@dataclass(frozen=True)
class Confirmed:
    """A verification the holder confirmed and has not withdrawn."""

    id: str
    answer_to: str  # the organisation's contacts address, where a withdrawal goes
    organisation: str  # its domain
    purpose: str  # from the request, or "" when the request is no longer in the Inbox
    confirmed_at: datetime


def is_contacts_address(address: str) -> bool:
    return address.lower().startswith(f"{LOCAL_PART}@")


def confirmed(requests: Iterable[Head], answers: Iterable[Head]) -> list[Confirmed]:
    """Verifications whose latest answer in ``answers`` (Sent) is a confirmation, newest
    first, with their purpose from ``requests`` (Inbox)."""
    purposes = {}
    for head in requests:
        found = _REQUEST.search(head.subject)
        if found is not None and is_contacts_address(head.sender):
            purposes[found.group(2)] = found.group(1)
    latest: dict[str, tuple[Head, str]] = {}
    for head in sorted(answers, key=lambda h: h.date):
        said = read_answer(head.subject)
        if said is not None and is_contacts_address(head.to):
            latest[said[1]] = (head, said[0])
    standing = [
        Confirmed(ident, head.to, head.to.partition("@")[2], purposes.get(ident, ""), head.date)
        for ident, (head, action) in latest.items()
        if action == "confirm"
    ]
    return sorted(standing, key=lambda c: c.confirmed_at, reverse=True)
