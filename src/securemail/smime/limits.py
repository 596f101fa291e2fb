"""Resource bounds checked before any expensive parsing (THREATS.md G).

Everything that arrives is measured first: total size, header size and field count, and
the shape of the DER (nesting depth and number of values), walked iteratively so a hostile
input cannot recurse the parser or make it allocate. Only then is it handed to asn1crypto.
"""

from __future__ import annotations

from dataclasses import dataclass

from securemail.smime.errors import Reason, SmimeError

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Caps on what the S/MIME core will parse."""

    max_message_bytes: int = 64 * MIB
    max_header_bytes: int = 256 * 1024
    max_header_fields: int = 1000
    max_der_depth: int = 24
    max_der_values: int = 200_000

    def check_size(self, data: bytes | bytearray | memoryview, what: str = "message") -> None:
        if len(data) > self.max_message_bytes:
            raise SmimeError(
                Reason.TOO_LARGE, f"{what} of {len(data)} bytes exceeds {self.max_message_bytes}"
            )


def _length(data: bytes, pos: int) -> tuple[int | None, int]:
    """Read a length at ``pos``; None means indefinite (BER). Returns (length, next pos)."""
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0:
        return None, pos
    if count > 4 or pos + count > len(data):
        raise SmimeError(Reason.MALFORMED, "DER length field too long or truncated")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def check_der(data: bytes, limits: Limits = Limits()) -> None:
    """Walk the tag-length structure of ``data`` and refuse it if it breaks ``limits``.

    Accepts BER indefinite lengths (gpgsm and streaming OpenSSL write them); checks that
    every value fits inside its parent and that the whole input is exactly one value.
    """
    if len(data) < 2:
        raise SmimeError(Reason.MALFORMED, "empty or truncated DER")
    ends: list[int | None] = [len(data)]  # end offset of each open constructed value
    bounds = [len(data)]  # the nearest definite end enclosing each open value
    pos = values = 0
    while len(ends) > 1 or values == 0:
        end = ends[-1]
        if end is not None and pos == end:
            ends.pop()
            bounds.pop()
            continue
        if pos + 2 > len(data):
            raise SmimeError(Reason.MALFORMED, "DER value truncated")
        if end is None and data[pos] == 0 and data[pos + 1] == 0:  # end-of-contents
            ends.pop()
            bounds.pop()
            pos += 2
            continue
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise SmimeError(Reason.MALFORMED, "high-tag-number form is not used in CMS")
        length, pos = _length(data, pos + 1)
        values += 1
        if values > limits.max_der_values:
            raise SmimeError(Reason.TOO_LARGE, f"more than {limits.max_der_values} DER values")
        if length is not None and pos + length > bounds[-1]:
            raise SmimeError(Reason.MALFORMED, "DER value overruns its container")
        if tag & 0x20:  # constructed: descend
            if len(ends) > limits.max_der_depth:
                raise SmimeError(Reason.TOO_LARGE, f"DER nested deeper than {limits.max_der_depth}")
            ends.append(None if length is None else pos + length)
            bounds.append(bounds[-1] if length is None else pos + length)
        elif length is None:
            raise SmimeError(Reason.MALFORMED, "indefinite length on a primitive value")
        else:
            pos += length
    if pos != len(data):
        raise SmimeError(Reason.MALFORMED, "trailing bytes after the DER value")
