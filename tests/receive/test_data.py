"""DATA read in blocks ends, unstuffs and refuses exactly as aiosmtpd's line loop does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.receive.data import Body, Verdict, read_data

LINE_LIMIT = SMTP.line_length_limit
REPLIES = {
    Verdict.LINE_TOO_LONG: "500 Line too long (see RFC5321 4.5.3.1.6)",
    Verdict.TOO_MUCH: "552 Error: Too much mail data",
}
AFTER = b"QUIT\r\n"  # pipelined after the transfer: must stay unread

# Pieces that make the edge cases likely: dots, bare CR and LF, CRLF, lines around the limits.
pieces = st.one_of(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"x", b"\n.\n", b"\r.\r"]),
    st.sampled_from([997, 998, 999, 1000, 1001, 1002, 1003, 1500, 2500]).map(lambda n: b"a" * n),
)
transfers = st.lists(pieces, max_size=30).map(b"".join)
size_limits = st.sampled_from([None, 0, 5, 100, 1001, 1500, 3000, 10_000])
chunk_sizes = st.sampled_from([1, 3, 7, 500, 1003, 4096, 1 << 20])


class _Harness:
    """Just enough of a session for aiosmtpd's own ``SMTP.smtp_DATA`` to run on a reader."""

    def __init__(self, reader: asyncio.StreamReader, size_limit: int | None) -> None:
        self._reader = reader
        self.transport = object()
        self.data_size_limit = size_limit
        self.line_length_limit = LINE_LIMIT
        self._decode_data = False
        self.enable_SMTPUTF8 = False
        self._auth_required = False
        self.session = Session(asyncio.get_running_loop())
        self.session.host_name = "client"
        self.envelope = Envelope()
        self.envelope.rcpt_tos.append("bob@agency.govt.nz")
        self._handle_hooks = {"DATA": self._hook}
        self.replies: list[str] = []
        self.content: bytes | None = None

    async def _hook(self, *_: Any) -> str:
        self.content = self.envelope.original_content
        return "250 OK"

    async def push(self, status: str) -> None:
        self.replies.append(status)

    def __getattr__(self, name: str) -> Any:
        return getattr(SMTP, name).__get__(self)  # aiosmtpd's helpers, bound to the harness

    def _set_post_data_state(self) -> None:
        self.envelope = Envelope()


async def _feed(reader: asyncio.StreamReader, stream: bytes, chunk: int) -> None:
    for start in range(0, len(stream), chunk):
        reader.feed_data(stream[start : start + chunk])
        await asyncio.sleep(0)


async def _aiosmtpd(stream: bytes, size_limit: int | None, chunk: int) -> tuple[str, Any, bytes]:
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    harness = _Harness(reader, size_limit)
    feeder = asyncio.create_task(_feed(reader, stream, chunk))
    await SMTP.smtp_DATA(harness, "")
    await feeder
    assert harness.replies[0].startswith("354 ")
    left = bytes(reader._buffer)  # type: ignore[attr-defined]
    return harness.replies[-1], harness.content, left


async def _ours(stream: bytes, size_limit: int | None, chunk: int) -> tuple[str, Any, bytes]:
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    feeder = asyncio.create_task(_feed(reader, stream, chunk))
    body = Body(size_limit, LINE_LIMIT)
    await asyncio.wait_for(read_data(reader, body), 30)  # a missed end fails, never hangs
    await feeder
    left = bytes(reader._buffer)  # type: ignore[attr-defined]
    if body.verdict is Verdict.OK:
        return "250 OK", body.content(), left
    return REPLIES[body.verdict], None, left


def _both(stream: bytes, size_limit: int | None, chunk: int) -> None:
    async def run() -> None:
        theirs = await _aiosmtpd(stream, size_limit, chunk)
        ours = await _ours(stream, size_limit, chunk)
        assert ours == theirs

    asyncio.run(run())


@settings(max_examples=300, deadline=None)
@given(transfers, size_limits, chunk_sizes)
def test_blocks_give_aiosmtpds_result(body: bytes, size_limit: int | None, chunk: int) -> None:
    """Any transfer, any size limit, any chunking: same reply, content and unread rest."""
    _both(body + b"\r\n.\r\n" + AFTER, size_limit, chunk)


# Long transfers of lines, some ending in a dot, some dot-stuffed, a few over the limit:
# what is read once past a line start is searched for CRLF.CRLF, in blocks over the limit.
lines = st.one_of(
    st.integers(0, 1100).map(lambda n: b"b" * n + b"\r\n"),
    st.sampled_from([b"end.\r\n", b"..\r\n", b".x\r\n", b"a\r", b"a\n", b"\r\n.\r", b"."]),
)
long_transfers = st.lists(lines, min_size=1, max_size=60).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(long_transfers, size_limits, st.sampled_from([1000, 1001, 1002, 2048, 4096, 1 << 20]))
def test_long_transfers_give_aiosmtpds_result(
    body: bytes, size_limit: int | None, chunk: int
) -> None:
    """Many lines in blocks over the stream limit: same reply, content and unread rest."""
    _both(body + b"\r\n.\r\n" + AFTER, size_limit, chunk)


@pytest.mark.parametrize(
    "stream",
    [
        b".\r\n" + AFTER,  # an empty message
        b"\r\n.\r\n" + AFTER,
        b"..\r\n.\r\n" + AFTER,  # a stuffed dot alone
        b"a\n.\nb\r.\rc\r\n.\n\r\n.\r\n" + AFTER,  # smuggling shapes stay inside
        b"a" * 999 + b"\r\n.\r\n" + AFTER,  # the longest line taken
        b"a" * 1000 + b"\r\n.\r\n" + AFTER,
        b"a" * 1001 + b"\r\n.\r\n" + AFTER,
        b"a" * 1002 + b"\r\n.\r\n" + AFTER,
        b"a" * 1001 + b"\r" + b"\r\n.\r\n" + AFTER,
        b"b" * 50 + b"\r\n" + b"a" * 5000 + b"\r\n.\r\n" + AFTER,
        b"a" * 1500 + b"\r\n" + b"c" * 1500 + b".\r\n.\r\n" + AFTER,  # past the limit
        b"a" * 1500 + b"\r\n.\r\n" + AFTER,
        b"a" * 1500 + b"\r\n..\r\n.\r\n" + AFTER,
    ],
)
@pytest.mark.parametrize("size_limit", [None, 40, 1001, 1100])
@pytest.mark.parametrize("chunk", [1, 2, 1002, 1 << 20])
def test_edge_transfers_give_aiosmtpds_result(
    stream: bytes, size_limit: int | None, chunk: int
) -> None:
    """The line-length and size limits at their edges, the empty message, smuggling shapes."""
    _both(stream, size_limit, chunk)


@pytest.mark.parametrize("chunk", range(1498, 1508))
@pytest.mark.parametrize("end", [b"\r\n.\r\n", b"\r\nx.\r\n.\r\n", b"\r\n..\r\n.\r\n"])
def test_a_block_boundary_inside_the_end_gives_aiosmtpds_result(chunk: int, end: bytes) -> None:
    """A block past the stream limit that stops inside CRLF.CRLF: the end is still found."""
    _both(b"a" * 1500 + end + AFTER, None, chunk)


def test_an_overlong_line_is_not_kept() -> None:
    """A line over the limit drops what was kept: memory stays bounded by one block."""
    body = Body(None, LINE_LIMIT)
    body.feed(b"short\r\n" + b"a" * 1003)
    assert body.verdict is Verdict.LINE_TOO_LONG
    assert body._parts == [] and body._open == b""
