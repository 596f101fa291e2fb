"""The message list of a folder: one row per message in the order asked for, and search.

Each row is read from the first 64 KiB of the file (the header), its seal checked over the
whole file (remembered per file, :mod:`securemail.deliver.seal`), and judged by
:func:`securemail.web.verification.judge`, so the list and the read page can never disagree
on whether a message is verified. Search looks at Subject, From and the plain text (or the
HTML's text) of at most :data:`MAX_SEARCHED` newest messages, each capped at
:data:`securemail.web.maildir_view.MAX_MESSAGE`: bounded work whatever the folder holds.
Blocking (file reads): call from a worker thread.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

from securemail.directory.model import Directory
from securemail.web import maildir_view as maildir
from securemail.web.reading import header, header_fields, parse, take_apart
from securemail.web.sanitise import clean_html
from securemail.web.verification import Verdict, judge

MAX_SEARCHED = 200


SORTS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "sender": "Sender (A to Z)",
    "subject": "Subject (A to Z)",
    "verified": "Verified SecureMail first",
}
"""The orders a folder can be listed in. Newest and oldest page through the whole folder;
sender and subject sort its newest :data:`~securemail.web.maildir_view.MAX_LISTED`
(reading every header of a large folder at each page would be unbounded work); verified
first sorts within each page of newest first."""
_BY_HEADER = ("sender", "subject")


@dataclass(frozen=True)
class Row:
    key: str
    subject: str
    sender: str
    to: str
    date: str
    size: int
    seen: bool
    verdict: Verdict


def list_rows(
    where: maildir.Folder,
    *,
    node_name: str,
    directory: Directory | None,
    sealing: maildir.Sealing,
    sort: str = "newest",
    offset: int = 0,
) -> tuple[list[Row], int]:
    """One page of rows of ``where`` (:data:`~securemail.web.maildir_view.PAGE` from
    ``offset``) in the order ``sort`` names (:data:`SORTS`); and how many messages the
    order covers (the folder's, or at most MAX_LISTED for sender and subject), so the page
    can say what it does not show."""
    if sort in _BY_HEADER:
        newest, total = maildir.newest(where, 0, maildir.MAX_LISTED)
        every = [_row(s, node_name, directory, sealing) for s in newest]
        every.sort(key=lambda r: _sort_key(r, sort))  # stable: newest first within equals
        return every[offset : offset + maildir.PAGE], min(total, maildir.MAX_LISTED)
    page, total = maildir.newest(where, offset, maildir.PAGE, oldest=sort == "oldest")
    rows = [_row(s, node_name, directory, sealing) for s in page]
    if sort == "verified":
        rows.sort(key=lambda r: not r.verdict.verified)  # stable: newest first within each
    return rows, total


def _sort_key(row: Row, sort: str) -> str:
    if sort == "sender":
        name, address = email.utils.parseaddr(row.sender)
        return (name or address).casefold()
    subject = row.subject.casefold()
    for prefix in ("re:", "fwd:", "fw:"):
        subject = subject.removeprefix(prefix).lstrip()
    return subject


def search_rows(
    where: maildir.Folder,
    query: str,
    *,
    node_name: str,
    directory: Directory | None,
    sealing: maildir.Sealing,
) -> list[Row]:
    """Rows whose Subject, From or text holds ``query`` (case-insensitive), newest first."""
    wanted = query.casefold()
    found = []
    for stored in maildir.messages(where)[:MAX_SEARCHED]:
        try:
            reading = take_apart(maildir.read(stored))
        except (maildir.MessageTooLargeError, OSError):
            continue
        text = reading.text or clean_html(reading.html or "")
        if any(wanted in part.casefold() for part in (reading.subject, reading.sender, text)):
            found.append(_row(stored, node_name, directory, sealing))
    return found


def _row(
    stored: maildir.Stored, node_name: str, directory: Directory | None, sealing: maildir.Sealing
) -> Row:
    try:
        head = maildir.read_head(stored)
    except OSError:
        head = b""
    message = parse(head)
    verdict = judge(
        header_fields(head),
        node_name=node_name,
        origin=sealing.origin_of(stored),
        keywords=stored.keywords,
        directory=directory,
        received=datetime.fromtimestamp(stored.mtime, UTC),
    )
    return Row(
        key=stored.key,
        subject=header(message, "Subject") or "(no subject)",
        sender=header(message, "From"),
        to=header(message, "To"),
        date=header(message, "Date"),
        size=stored.size,
        seen=stored.seen,
        verdict=verdict,
    )
