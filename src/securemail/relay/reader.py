"""SMTP replies read off a session's transport in order, however many one read brings.

RFC 2920 §3.1 lets a client write a group of commands and then read their replies, which a
server may send in one packet. aiosmtplib cannot read them: it parses one reply per command
and drops bytes that arrive while no reply is awaited. So for a pipelined transaction the
session's transport gets a :class:`ReplyReader` as its protocol (:func:`install`), which
keeps every complete reply in a queue, and the library's protocol is put back afterwards
(:func:`restore`); between commands the library's buffer is empty, so nothing is lost.

Security: the bytes are the remote server's and untrusted: a reply line is at most 8 KiB
and a reply at most 200 lines, anything else that is not ``<code>[ -]<text>`` ends the
session (SMTPResponseException); the text goes on only through
:func:`securemail.smtpwire.wire.wire_reply`.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import cast

from aiosmtplib import SMTP, SMTPResponseException, SMTPServerDisconnected

_LINE_LIMIT = 8192  # bytes per reply line, as aiosmtplib; RFC 5321 §4.5.3.1.5 asks for 512
_MAX_REPLY_LINES = 200
_REPLY_LINE = re.compile(rb"([2-5][0-9]{2})([ -]?)(.*?)[ \t\r]*\n")


class ReplyReader(asyncio.Protocol):
    """Complete replies as ``(code, text)`` in arrival order (mutable by design).

    The text of a multi-line reply is its lines' texts joined by LF, as aiosmtplib gives it.
    """

    def __init__(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._buffer = bytearray()
        self._lines: list[str] = []  # texts of the reply being read
        self._replies: deque[tuple[int, str]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended: Exception | None = None  # why no more replies will come

    async def reply(self) -> tuple[int, str]:
        """The next reply; waits at most the session's timeout for it (TimeoutError).

        Raises SMTPServerDisconnected once the connection ended, SMTPResponseException for
        bytes that are no reply; replies that arrived before either are still given first.
        """
        while not self._replies:
            if self._ended is not None:
                raise self._ended
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._timeout):
                    await self._waiter
            finally:
                self._waiter = None
        return self._replies.popleft()

    def data_received(self, data: bytes) -> None:
        if self._ended is not None:
            return
        self._buffer += data
        try:
            self._parse()
        except SMTPResponseException as exc:
            self._end(exc)
        self._wake()

    def eof_received(self) -> bool:
        self._end(SMTPServerDisconnected("connection closed by the server"))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(SMTPServerDisconnected(f"connection lost: {exc}" if exc else "connection lost"))

    def _parse(self) -> None:
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            match = _REPLY_LINE.fullmatch(self._buffer, start, end + 1)
            if match is None or end + 1 - start > _LINE_LIMIT:
                line = bytes(self._buffer[start : min(end, start + 80)])
                raise SMTPResponseException(-1, f"malformed reply line {line!r}")
            start = end + 1
            self._lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) != b"-":
                self._replies.append((int(match.group(1)), "\n".join(self._lines)))
                self._lines = []
            elif len(self._lines) >= _MAX_REPLY_LINES:
                raise SMTPResponseException(-1, f"reply longer than {_MAX_REPLY_LINES} lines")
        del self._buffer[:start]
        if len(self._buffer) > _LINE_LIMIT:
            raise SMTPResponseException(-1, "reply line too long")

    def _end(self, exc: Exception) -> None:
        if self._ended is None:
            self._ended = exc
        self._wake()

    def _wake(self) -> None:
        if (
            self._waiter is not None
            and not self._waiter.done()
            and (self._replies or self._ended is not None)
        ):
            self._waiter.set_result(None)


def install(client: SMTP) -> tuple[asyncio.WriteTransport, ReplyReader]:
    """Take the session's replies from now on; the transport to write commands to."""
    transport = cast(asyncio.WriteTransport | None, client.transport)
    if transport is None or transport.is_closing():
        raise SMTPServerDisconnected("connection lost")
    reader = ReplyReader(client.timeout)
    transport.set_protocol(reader)
    return transport, reader


def restore(client: SMTP) -> None:
    """Give the session back to aiosmtplib, or close it if it ended meanwhile."""
    transport = client.transport
    if client.protocol is None or transport is None or transport.is_closing():
        client.close()
        return
    transport.set_protocol(client.protocol)
