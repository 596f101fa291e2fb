"""One SMTP mail transaction on an open, secured session: MAIL, RCPT per recipient, DATA.

The session is opened and closed elsewhere (:mod:`securemail.relay.client` for one message,
:mod:`securemail.relay.pool` for a reused session); this module never says QUIT or RSET.
The transaction is split in two steps (:class:`MailSteps`) so a caller can tell a failure
of the first command (``start``: nothing of the message accepted) from one after
recipients were accepted.

Theory of operation. When the server's EHLO (the one after STARTTLS) lists PIPELINING,
:class:`PipelinedMail` writes MAIL FROM, every RCPT TO and DATA at once and reads their
replies in order (RFC 2920 §3.1: DATA only last in a group), then writes the body with its
CRLF.CRLF at once and reads the final reply: two writes and two waits a message instead of
four. Every reply is checked (RFC 2920 §3.1): the RCPT replies give each recipient its own
Reply; if MAIL or every RCPT was refused but DATA still got 354, a lone "." ends an empty
message the server refuses, and the replies read before stand. A 421 (the server is
closing, RFC 5321 §3.8) closes the session as aiosmtplib does for the commands it sends, so
the pool never parks it. Without PIPELINING, :class:`OneByOne` sends one command at a time
through aiosmtplib. Either way every recipient gets the same Reply for the same replies.

Security: the remote replies are untrusted; they reach a Reply only through
:func:`securemail.smtpwire.wire.wire_reply`. An address that could inject a command is never
written (:func:`securemail.smtpwire.wire.unsafe_text`). The body is written dot-stuffed
with CRLF line ends only (:func:`securemail.smtpwire.wire.data_payload`; aiosmtplib's
``data`` does the same on the one-at-a-time path).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from aiosmtplib import (
    SMTP,
    SMTPDataError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from securemail.relay.reader import ReplyReader, install, restore
from securemail.replies import Reply
from securemail.smtpwire.wire import (
    bad_address,
    data_payload,
    needs_smtputf8,
    no_smtputf8,
    unsafe_text,
    wire_reply,
)

REFUSED = "remote-refused"  # reason code of a 4xx/5xx answer from the remote server
_CLOSING = 421  # RFC 5321 §3.8: the server is closing the session


class MailSteps(Protocol):
    """One transaction in two steps; ``finish`` is called only after ``start`` gave None."""

    async def start(self) -> dict[str, Reply] | None:
        """Local checks, then MAIL FROM: None once MAIL was accepted, else every recipient's
        Reply. If it raises, nothing of the message was accepted."""
        ...

    async def finish(self) -> dict[str, Reply]:
        """The recipients and the body: one Reply per recipient."""
        ...


def mail_steps(client: SMTP, mail_from: str, wanted: list[str], body: bytes) -> MailSteps:
    """Pipelined when the session's server offers it (RFC 2920), else one command at a time."""
    if client.supports_extension("pipelining"):
        return PipelinedMail(client, mail_from, wanted, body)
    return OneByOne(client, mail_from, wanted, body)


async def transact(
    client: SMTP, mail_from: str, wanted: list[str], body: bytes
) -> dict[str, Reply]:
    """The whole transaction: one Reply per recipient in ``wanted``."""
    mail = mail_steps(client, mail_from, wanted, body)
    refusal = await mail.start()
    return refusal if refusal is not None else await mail.finish()


@dataclass(frozen=True)
class OneByOne:
    """See :class:`MailSteps`: each command waits for its reply (aiosmtplib's commands)."""

    client: SMTP
    mail_from: str
    wanted: list[str]
    body: bytes

    async def start(self) -> dict[str, Reply] | None:
        client, utf8 = self.client, needs_smtputf8(self.mail_from, self.wanted)
        refusal = _local_refusal(client, self.mail_from, self.wanted)
        if refusal is not None:
            return refusal
        try:
            options = _mail_options(client, self.body, utf8)
            await client.mail(self.mail_from, options=options, encoding=_encoding(utf8))
        except SMTPSenderRefused as exc:
            return {r: wire_reply(exc.code, exc.message, reason=REFUSED) for r in self.wanted}
        return None

    async def finish(self) -> dict[str, Reply]:
        encoding = _encoding(needs_smtputf8(self.mail_from, self.wanted))
        results: dict[str, Reply] = {}
        for rcpt in self.wanted:
            results[rcpt] = await self._recipient(rcpt, encoding)
        accepted = [r for r, reply in results.items() if reply.ok]
        if accepted:
            results.update(dict.fromkeys(accepted, await self._data()))
        return results

    async def _recipient(self, rcpt: str, encoding: str) -> Reply:
        """One RCPT: its own Reply (2xx here means "accepted so far")."""
        if unsafe_text(rcpt):
            return bad_address("5.1.3", rcpt)
        try:
            response = await self.client.rcpt(rcpt, encoding=encoding)
        except SMTPRecipientRefused as exc:
            return wire_reply(exc.code, exc.message, reason=REFUSED)
        return wire_reply(response.code, response.message, reason=REFUSED)

    async def _data(self) -> Reply:
        """DATA and the body; the one final reply applies to every accepted recipient."""
        try:
            response = await self.client.data(self.body)
        except SMTPDataError as exc:
            return wire_reply(exc.code, exc.message, reason=REFUSED)
        return wire_reply(response.code, response.message, reason=REFUSED)


class PipelinedMail:
    """See :class:`MailSteps` and the module docstring: RFC 2920 pipelining.

    Mutable by design: between ``start`` and the end of the transaction the session's
    replies go to a :class:`securemail.relay.reader.ReplyReader`, given back after.
    """

    _transport: asyncio.WriteTransport  # both set by start, before finish can be called
    _reader: ReplyReader

    def __init__(self, client: SMTP, mail_from: str, wanted: list[str], body: bytes) -> None:
        self._client, self._mail_from, self._wanted, self._body = client, mail_from, wanted, body
        self._safe = [r for r in wanted if not unsafe_text(r)]  # the RCPTs written
        self._closing = False  # a 421 was read: no more replies will come

    async def start(self) -> dict[str, Reply] | None:
        refusal = _local_refusal(self._client, self._mail_from, self._wanted)
        if refusal is not None:
            return refusal
        if not self._safe:  # nothing to send at all
            return {r: bad_address("5.1.3", r) for r in self._wanted}
        self._transport, self._reader = install(self._client)
        try:
            self._transport.write(self._group())
            code, text = await self._reply()
        except BaseException:
            restore(self._client)
            raise
        if 200 <= code < 300:
            return None
        await self._drain(len(self._safe) + 1)
        return {r: wire_reply(code, text, reason=REFUSED) for r in self._wanted}

    async def finish(self) -> dict[str, Reply]:
        results = {r: bad_address("5.1.3", r) for r in self._wanted if unsafe_text(r)}
        try:
            for rcpt in self._safe:
                code, text = await self._reply()
                results[rcpt] = wire_reply(code, text, reason=REFUSED)
        except BaseException:
            restore(self._client)
            raise
        accepted = [r for r in self._safe if results[r].ok]
        if accepted:
            results.update(dict.fromkeys(accepted, await self._data()))
        else:
            await self._drain(1)
        return {r: results[r] for r in self._wanted}

    def _group(self) -> bytes:
        """MAIL FROM, one RCPT TO per safe recipient, DATA: the first write."""
        utf8 = needs_smtputf8(self._mail_from, self._wanted)
        encoding = _encoding(utf8)
        options = "".join(f" {o}" for o in _mail_options(self._client, self._body, utf8))
        lines = [f"MAIL FROM:<{self._mail_from}>{options}".encode(encoding)]
        lines += [f"RCPT TO:<{rcpt}>".encode(encoding) for rcpt in self._safe]
        lines.append(b"DATA\r\n")
        return b"\r\n".join(lines)

    async def _reply(self) -> tuple[int, str]:
        if self._closing:
            raise SMTPServerDisconnected("the server closed the session (421)")
        code, text = await self._reader.reply()
        if code == _CLOSING:
            self._closing = True
            self._client.close()
        return code, text

    async def _data(self) -> Reply:
        """DATA's 354, the body in one write, the final reply (for every accepted recipient)."""
        try:
            code, text = await self._reply()
            if code == 354:
                self._transport.write(data_payload(self._body))
                code, text = await self._reply()
        finally:
            restore(self._client)
        return wire_reply(code, text, reason=REFUSED)

    async def _drain(self, count: int) -> None:
        """Read the ``count`` replies left, the last DATA's, when nothing was accepted; a 354
        gets a lone "." (RFC 2920 §3.1). The outcome is known already: a failure here only
        closes the session."""
        try:
            for _ in range(count):
                code, _text = await self._reply()
            if code == 354:
                self._transport.write(b".\r\n")
                await self._reply()
        except (SMTPException, OSError, TimeoutError):
            self._client.close()
        finally:
            restore(self._client)


def _local_refusal(client: SMTP, mail_from: str, wanted: list[str]) -> dict[str, Reply] | None:
    """Every recipient's Reply when the envelope cannot be sent at all, else None."""
    if unsafe_text(mail_from):
        return {r: bad_address("5.1.7", mail_from) for r in wanted}
    if needs_smtputf8(mail_from, wanted) and not client.supports_extension("smtputf8"):
        return {r: no_smtputf8(REFUSED, r) for r in wanted}
    return None


def _encoding(utf8: bool) -> str:
    return "utf-8" if utf8 else "ascii"


def _mail_options(client: SMTP, body: bytes, utf8: bool) -> list[str]:
    options = ["SMTPUTF8"] if utf8 else []
    if not body.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")  # RFC 6152 §3
    return options
