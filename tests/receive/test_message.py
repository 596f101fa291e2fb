"""Message checks at the end of DATA: line ends, hops, S/MIME type, trace field."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from securemail.receive.message import (
    check_hops,
    check_smime_type,
    header_section,
    normalise_line_ends,
    trace_field,
    with_protocol,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@given(st.binary(max_size=200))
def test_normalised_text_has_only_crlf(body: bytes) -> None:
    """After normalisation every CR is followed by LF and every LF preceded by CR."""
    normal = normalise_line_ends(body)
    assert normal.count(b"\r") == normal.count(b"\n") == normal.count(b"\r\n")
    assert normal.replace(b"\r\n", b"") == body.replace(b"\r\n", b"").replace(b"\r", b"").replace(
        b"\n", b""
    )


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\n\r"]), max_size=60))
def test_the_canonical_fast_path_agrees_with_the_substitution(parts: list[bytes]) -> None:
    """Line ends only: the result is the regular substitution's, whether the input was
    already canonical (returned as is) or not."""
    body = b"".join(parts)
    assert normalise_line_ends(body) == re.sub(rb"\r\n|\r|\n", b"\r\n", body)


def test_header_section_stops_at_the_empty_line() -> None:
    """Only the top-level header fields are scanned, not the body."""
    assert header_section(b"A: 1\r\nB: 2\r\n\r\nC: 3\r\n") == b"A: 1\r\nB: 2\r\n"
    assert header_section(b"\r\nC: 3\r\n") == b""
    assert header_section(b"A: 1\r\n") == b"A: 1\r\n"


def test_hops_counts_only_received_fields() -> None:
    """Thirty Received: fields pass, thirty-one are a loop; continuation lines do not count."""
    field = b"Received: from a\r\n\tby b; date\r\n"
    assert check_hops(field * 30 + b"X-Received: c\r\n") is None
    loop = check_hops(field * 31)
    assert loop is not None and (loop.code, loop.status, loop.reason) == (554, "5.4.6", "loop")


def test_smime_type_refusal_names_the_type() -> None:
    """A refusal's detail names the top-level type found, for the log."""
    reply = check_smime_type(b"Content-Type: text/html; charset=utf-8\r\n")
    assert reply is not None and reply.detail == "top-level type text/html"


def test_protocol_keyword() -> None:
    """RFC 3848 keywords for plain, TLS, authenticated and TLS+authenticated sessions."""
    assert with_protocol(extended=False, tls=False, authenticated=False) == "SMTP"
    assert with_protocol(extended=True, tls=False, authenticated=False) == "ESMTP"
    assert with_protocol(extended=True, tls=True, authenticated=False) == "ESMTPS"
    assert with_protocol(extended=True, tls=True, authenticated=True) == "ESMTPSA"


def test_trace_field_for_ipv6_and_a_hostile_helo() -> None:
    """IPv6 clients get an IPv6: literal; a HELO that could forge the field is replaced."""
    field = trace_field("x) by evil; x", "2001:db8::1", "mx.example", "ESMTPS", NOW)
    assert field == (
        b"Received: from invalid ([IPv6:2001:db8::1])\r\n"
        b"\tby mx.example with ESMTPS;\r\n"
        b"\tSun, 29 Nov 2026 12:00:00 +0000\r\n"
    )
