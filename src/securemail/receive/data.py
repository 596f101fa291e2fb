"""The DATA transfer read in blocks, with the verdict aiosmtpd 1.4.6's line loop reaches.

Theory of operation: aiosmtpd reads DATA a line at a time (``readuntil(CRLF)`` through a
1001-octet stream limit) and runs Python for every line. :func:`read_data` instead asks the
stream for everything up to the next ``.CRLF``, or ``CRLF.CRLF`` once past a line start
(past the stream limit, for what is buffered), and hands whole blocks to :class:`Body`,
which checks their lines by jumps of one line limit. The result is the same, octet for
octet and reply for reply:

- DATA ends only at a line that is exactly ``.`` CRLF, that is ``.CRLF`` at the start of
  the transfer or after CRLF (RFC 5321 §4.1.1.4); a bare CR or LF before the dot is not a
  line end (SMTP smuggling, THREATS.md B). Nothing after that line is read: it stays in
  the stream for the next command.
- A line longer than 1001 octets with its CRLF (RFC 5321 §4.5.3.1.6, plus the
  transparency dot) makes the reply ``500 Line too long``; more than ``size_limit`` octets
  of lines (counted with their CRLF, before dot-unstuffing) make it ``552 Too much mail
  data``. Whichever aiosmtpd would have met first is the one given: a line whose text is
  over 1001 octets overran its stream limit before the line was counted, a shorter
  over-long line was counted first. Both are given only after the final dot.
- Once the verdict is not "ok" nothing more is kept, so a transfer never holds more than
  ``size_limit`` octets plus one line and one block.
- Dot-unstuffing (RFC 5321 §4.5.2): the first octet of every line that starts with a dot is
  removed.

Security: every octet is the client's. The stream's own limit bounds what one read
returns; tests/receive/test_data.py checks :class:`Body` against aiosmtpd's line loop on
generated transfers, and tests/receive/test_smuggling.py the listener end to end.
"""

from __future__ import annotations

import asyncio
import enum

_CRLF = b"\r\n"
_DOT_LINE = b".\r\n"
_END = b"\r\n.\r\n"  # the line "." after a line end
_STUFFED = b"\r\n."  # a line starting with a dot: dot-stuffed (RFC 5321 §4.5.2)


class Verdict(enum.Enum):
    """How a DATA transfer ended: a message, or which limit it broke first."""

    OK = enum.auto()
    LINE_TOO_LONG = enum.auto()
    TOO_MUCH = enum.auto()


class Body:
    """The octets of one DATA transfer before its final dot, fed in blocks of any size.

    ``line_limit`` is aiosmtpd's ``line_length_limit`` (1001, the stream limit too);
    ``size_limit`` its ``data_size_limit`` (None or 0: none).
    """

    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self.verdict = Verdict.OK
        self._size_limit = size_limit or 0
        self._line_limit = line_limit
        self._parts: list[bytes] = []
        self._open = b""  # the last line so far, without its CRLF yet
        self._counted = 0  # octets of whole lines so far, with their CRLF

    def feed(self, block: bytes) -> None:
        """The next octets of the transfer (never past the final dot's CRLF)."""
        if self.verdict is not Verdict.OK:
            return
        self._parts.append(block)
        data = self._open + block if self._open else block
        last = data.rfind(_CRLF)
        end = last + 2 if last >= 0 else 0  # the whole lines end here
        if end and self._has_long_line(data, end):
            self._stop(self._first_too_long(data[:end].split(_CRLF)[:-1]))
            return
        self._open = data[end:]
        self._counted += end
        if self._size_limit and self._counted > self._size_limit:
            self._stop(Verdict.TOO_MUCH)
        elif len(self._open) > self._line_limit + 1:
            # Its text is longer than the stream limit even if a CR ends it: it overran.
            self._stop(Verdict.LINE_TOO_LONG)

    def _has_long_line(self, data: bytes, end: int) -> bool:
        """Whether a line of ``data[:end]`` (whole lines) is over the limit with its CRLF.

        A line starting at ``start`` fits if its CRLF lies within the next ``line_limit``
        octets; then so do all lines up to the last CRLF there. Each step jumps about a
        line limit ahead, in C, rather than splitting the block into lines.
        """
        start, window = 0, self._line_limit
        while end - start > window:
            found = data.rfind(_CRLF, start, start + window)
            if found < 0:
                return True
            start = found + 2
        return False

    def _first_too_long(self, lines: list[bytes]) -> Verdict:
        """Which limit aiosmtpd meets first, given that one of ``lines`` is too long."""
        start = self._counted
        for line in lines:
            if len(line) + 2 > self._line_limit:
                # Longer than the stream limit: LimitOverrunError before it was counted.
                counted = start if len(line) > self._line_limit else start + len(line) + 2
                over = self._size_limit and counted > self._size_limit
                return Verdict.TOO_MUCH if over else Verdict.LINE_TOO_LONG
            start += len(line) + 2
        raise AssertionError("no line is too long")

    def _stop(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self._parts.clear()
        self._open = b""

    def content(self) -> bytes:
        """The message: every line with its CRLF, dot-unstuffed (only for Verdict.OK)."""
        if self.verdict is not Verdict.OK or self._open:
            raise ValueError("the transfer did not end in a message")
        data = b"".join(self._parts)
        # No dot past the last one (found from the end, by memrchr): the base64 of S/MIME
        # has none, so its stuffed lines, if any, are only looked for in the header.
        if data.count(_STUFFED, 0, data.rfind(b".") + 1):
            data = data.replace(_STUFFED, _CRLF)
        return data[1:] if data.startswith(b".") else data


async def read_data(reader: asyncio.StreamReader, body: Body) -> None:
    """Feed ``body`` from ``reader`` up to the line ``.``, which is read but not fed.

    At a line start (the start of the transfer, or after a CRLF that ended what was read)
    the end is ``.CRLF`` there, so the stream is searched for ``.CRLF`` and the two octets
    before a hit are checked. Once what was read ends in an octet that cannot begin the
    end (not CR, LF or a dot), every end still ahead is ``CRLF.CRLF`` wholly unread: that
    five-octet separator is then searched for, which skips faster and does not stop at
    every line that ends in a dot. Past the stream limit the reader hands back only octets
    in which no separator starts, so nothing read can hold a part of the end.
    """
    tail = b""  # the last two octets read so far (empty: at the start of the transfer)
    separator = _DOT_LINE
    while True:
        try:
            block = await reader.readuntil(separator)
        except asyncio.LimitOverrunError as error:
            # No separator starts within error.consumed octets: they cannot end the transfer.
            block = await reader.read(error.consumed)
        else:
            before = (tail + block[-5:-3])[-2:]
            if separator is _END or before == _CRLF or (not tail and len(block) == 3):
                body.feed(block[:-3])
                return
        body.feed(block)
        tail = (tail + block[-2:])[-2:]
        if tail[-1:] not in (b"", b"\r", b"\n", b"."):
            separator = _END
