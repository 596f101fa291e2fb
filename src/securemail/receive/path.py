"""The path of MAIL FROM and RCPT TO exactly as the client wrote it, the plain form fast.

aiosmtpd parses a path with the ``email`` package's header parser, which silently drops a
source route, comments and spaces; :mod:`securemail.receive.envelope` must judge what was
sent, so :func:`as_written` takes the address back out of the command as written. Almost
every path is the plain ``<local@domain>`` (RFC 5321 §4.1.2 Dot-string on both sides):
:func:`plain_path` reads that form with one regular expression and gives exactly what
aiosmtpd's parser followed by :func:`as_written` gives; for anything else (quoted local
parts, source routes, address literals, comments, empty labels) it returns None and the
caller uses the parser. tests/receive/test_path.py checks the two agree.
"""

from __future__ import annotations

import re

# RFC 5322 §3.2.3 atext: the characters of a Dot-string's atoms (no dot, quote, bracket,
# space, "@", "<", ">", "(" or ")"), ASCII only.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_STRING = rf"{_ATOM}(?:\.{_ATOM})*"
_PLAIN = re.compile(rf"<({_DOT_STRING}@{_DOT_STRING})>")
_WSP = " \t"  # what the parser skips after ">" (with comments, which take the slow path)


def plain_path(arg: str) -> tuple[str, str] | None:
    """(address, parameters) for ``<local@domain>`` [SP parameters], else None."""
    match = _PLAIN.match(arg)
    if match is None:
        return None
    rest = arg[match.end() :].lstrip(_WSP)
    if rest.startswith("("):
        return None  # a comment: the parser drops it
    return match.group(1), rest


def as_written(arg: str, address: str | None, rest: str | None) -> tuple[str | None, str | None]:
    """aiosmtpd's parse of ``arg`` (``address``, ``rest``), the address as written in it.

    ``<>`` stays ``<>`` as in aiosmtpd; an unparsable path stays (None, None).
    """
    if not address or rest is None:
        return address, rest
    written = arg[: len(arg) - len(rest)].rstrip()
    if written.startswith("<") and written.endswith(">"):
        written = written[1:-1]
    return written or "<>", rest
