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


def check_der(data: bytes, limits: Limits = Limits()) -> None:
    """Walk the tag-length structure of ``data`` and refuse it if it breaks ``limits``.

    Accepts BER indefinite lengths (gpgsm and streaming OpenSSL write them); checks that
    every value fits inside its parent and that the whole input is exactly one value.
    It runs twice per message on every value of the CMS layers (a certificate alone has
    about fifty), so the loop is written flat: one pass, locals only, no calls.
    """
    size = len(data)
    if size < 2:
        raise SmimeError(Reason.MALFORMED, "empty or truncated DER")
    max_values, max_depth = limits.max_der_values, limits.max_der_depth
    # The innermost open value: its end (None: indefinite, BER) and the nearest definite end
    # enclosing it; the values around it wait on the stack.
    end: int | None = size
    bound = size
    stack: list[tuple[int | None, int]] = []
    pos = values = 0
    while stack or values == 0:
        if pos == end:
            end, bound = stack.pop()
            continue
        if pos + 2 > size:
            raise SmimeError(Reason.MALFORMED, "DER value truncated")
        tag, first = data[pos], data[pos + 1]
        if end is None and tag == 0 and first == 0:  # end-of-contents
            end, bound = stack.pop()
            pos += 2
            continue
        if tag & 0x1F == 0x1F:
            raise SmimeError(Reason.MALFORMED, "high-tag-number form is not used in CMS")
        pos += 2
        length: int | None = first
        if first >= 0x80:  # long form, or 0x80: indefinite
            count = first & 0x7F
            if count > 4 or pos + count > size:
                raise SmimeError(Reason.MALFORMED, "DER length field too long or truncated")
            length = int.from_bytes(data[pos : pos + count], "big") if count else None
            pos += count
        values += 1
        if values > max_values:
            raise SmimeError(Reason.TOO_LARGE, f"more than {max_values} DER values")
        if length is not None and pos + length > bound:
            raise SmimeError(Reason.MALFORMED, "DER value overruns its container")
        if tag & 0x20:  # constructed: descend
            if len(stack) >= max_depth:
                raise SmimeError(Reason.TOO_LARGE, f"DER nested deeper than {max_depth}")
            stack.append((end, bound))
            if length is not None:
                bound = pos + length
            end = None if length is None else bound
        elif length is None:
            raise SmimeError(Reason.MALFORMED, "indefinite length on a primitive value")
        else:
            pos += length
    if pos != size:
        raise SmimeError(Reason.MALFORMED, "trailing bytes after the DER value")
