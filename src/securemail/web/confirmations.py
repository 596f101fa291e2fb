"""The verifications a mailbox holder confirmed, read from their Inbox and Sent heads.

Security: only the heads (From, To, Subject, Date) of the holder's own newest messages are
read; :mod:`securemail.contacts.holder` decides what they mean.
"""

from __future__ import annotations

import asyncio
from email.parser import BytesHeaderParser
from email.policy import default
from email.utils import parsedate_to_datetime
from pathlib import Path

from securemail.access.model import Principal
from securemail.contacts.holder import Confirmed, Head, confirmed
from securemail.web import maildir_view as maildir
from securemail.web.context import WebContext

_SCANNED = 500  # the newest messages of Inbox and Sent looked at


async def confirmed_of(web: WebContext, principal: Principal) -> list[Confirmed]:
    """The verifications ``principal`` confirmed and has not withdrawn (none without a mailbox)."""
    root = web.maildir_for(principal.account.primary)
    if root is None:
        return []
    return await asyncio.to_thread(_scan, root)


def _scan(root: Path) -> list[Confirmed]:
    maildir.prepare(root)
    return confirmed(_heads(root, maildir.INBOX), _heads(root, maildir.SENT))


def _heads(root: Path, name: str) -> list[Head]:
    where = maildir.folder(root, name)
    if where is None:
        return []
    heads = []
    for stored in maildir.newest(where, 0, _SCANNED)[0]:
        fields = BytesHeaderParser(policy=default).parsebytes(maildir.read_head(stored))
        try:
            date = parsedate_to_datetime(str(fields.get("Date", "")))
        except (TypeError, ValueError):
            continue
        sender, to, subject = (str(fields.get(k, "")) for k in ("From", "To", "Subject"))
        heads.append(Head(sender.strip(), to.strip(), subject, date))
    return heads
