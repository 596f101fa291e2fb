"""One SMTP mail transaction on an open, secured session: MAIL, RCPT per recipient, DATA.

The session is opened and closed elsewhere (:mod:`securemail.relay.client` for one message,
:mod:`securemail.relay.pool` for a reused session); this module never says QUIT or RSET.
The transaction is split in two steps so a caller can tell a failure of the first command
(:func:`start_mail`: nothing of the message sent) from one after recipients were accepted.

Security: the remote replies are untrusted; they reach a Reply only through
:func:`securemail.smtpwire.wire.wire_reply`. An address that could inject a command is never
written (:func:`securemail.smtpwire.wire.unsafe_text`).
"""

from __future__ import annotations

from aiosmtplib import SMTP, SMTPDataError, SMTPRecipientRefused, SMTPSenderRefused

from securemail.replies import Reply
from securemail.smtpwire.wire import (
    bad_address,
    needs_smtputf8,
    no_smtputf8,
    unsafe_text,
    wire_reply,
)

REFUSED = "remote-refused"  # reason code of a 4xx/5xx answer from the remote server


async def transact(
    client: SMTP, mail_from: str, wanted: list[str], body: bytes
) -> dict[str, Reply]:
    """The whole transaction: one Reply per recipient in ``wanted``."""
    refusal = await start_mail(client, mail_from, wanted, body)
    if refusal is not None:
        return refusal
    return await finish_mail(client, mail_from, wanted, body)


async def start_mail(
    client: SMTP, mail_from: str, wanted: list[str], body: bytes
) -> dict[str, Reply] | None:
    """Local checks, then MAIL FROM; None once MAIL was accepted, else every recipient's Reply.

    Sends at most the one MAIL command: if it raises, no recipient and no byte of the body
    reached the server.
    """
    if unsafe_text(mail_from):
        return {r: bad_address("5.1.7", mail_from) for r in wanted}
    utf8 = needs_smtputf8(mail_from, wanted)
    if utf8 and not client.supports_extension("smtputf8"):
        return {r: no_smtputf8(REFUSED, r) for r in wanted}
    try:
        await client.mail(
            mail_from, options=_mail_options(client, body, utf8), encoding=_encoding(utf8)
        )
    except SMTPSenderRefused as exc:
        return {r: wire_reply(exc.code, exc.message, reason=REFUSED) for r in wanted}
    return None


async def finish_mail(
    client: SMTP, mail_from: str, wanted: list[str], body: bytes
) -> dict[str, Reply]:
    """RCPT for each recipient, then DATA once if any was accepted (after start_mail)."""
    encoding = _encoding(needs_smtputf8(mail_from, wanted))
    results = await _recipients(client, wanted, encoding)
    accepted = [r for r, reply in results.items() if reply.ok]
    if accepted:
        final = await _data(client, body)
        results.update(dict.fromkeys(accepted, final))
    return results


async def _recipients(client: SMTP, wanted: list[str], encoding: str) -> dict[str, Reply]:
    """One RCPT per recipient: its own Reply (2xx here means "accepted so far")."""
    results: dict[str, Reply] = {}
    for rcpt in wanted:
        if unsafe_text(rcpt):
            results[rcpt] = bad_address("5.1.3", rcpt)
            continue
        try:
            response = await client.rcpt(rcpt, encoding=encoding)
        except SMTPRecipientRefused as exc:
            results[rcpt] = wire_reply(exc.code, exc.message, reason=REFUSED)
        else:
            results[rcpt] = wire_reply(response.code, response.message, reason=REFUSED)
    return results


async def _data(client: SMTP, body: bytes) -> Reply:
    """DATA and the body; the one final reply applies to every accepted recipient."""
    try:
        response = await client.data(body)
    except SMTPDataError as exc:
        return wire_reply(exc.code, exc.message, reason=REFUSED)
    return wire_reply(response.code, response.message, reason=REFUSED)


def _encoding(utf8: bool) -> str:
    return "utf-8" if utf8 else "ascii"


def _mail_options(client: SMTP, body: bytes, utf8: bool) -> list[str]:
    options = ["SMTPUTF8"] if utf8 else []
    if not body.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")  # RFC 6152 §3
    return options
