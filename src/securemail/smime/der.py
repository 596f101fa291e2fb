"""DER framing for large values without copying them.

CMS wraps the message body in four or five layers of tag-length headers. Building those
layers by concatenation copies the body once per layer; :class:`Chunks` keeps the layers as
a list of byte strings with a known total length, so the body is copied once, when the
final value is joined (or never, when the chunks are streamed into a cipher).

Only definite-length DER is produced here. Parsing is asn1crypto's job (it also reads the
indefinite-length BER that gpgsm and streaming OpenSSL write).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from asn1crypto import core

SEQUENCE = 0x30
SET = 0x31
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
INTEGER = 0x02


def header(tag: int, length: int) -> bytes:
    """Return the identifier and definite length octets (X.690 §8.1.3) of one value."""
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


class Chunks:
    """A DER value held as pieces; ``len()`` is its encoded length."""

    __slots__ = ("_length", "parts")

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self._length = sum(len(p) for p in parts)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def join(self) -> bytes:
        return b"".join(self.parts)


def tlv(tag: int, *children: bytes | Chunks) -> Chunks:
    """Wrap children (already-encoded values) in one constructed or primitive value."""
    parts: list[bytes] = []
    for child in children:
        if isinstance(child, Chunks):
            parts.extend(child.parts)
        else:
            parts.append(child)
    length = sum(len(p) for p in parts)
    return Chunks([header(tag, length), *parts])


def encode(tag: int, *children: bytes | Chunks) -> bytes:
    """Like :func:`tlv` but joined: for small values."""
    return tlv(tag, *children).join()


def oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def integer(value: int) -> bytes:
    return bytes(core.Integer(value).dump())


def octet_string(value: bytes | Chunks) -> Chunks:
    return tlv(OCTET_STRING, value)


def der_set(members: Iterable[bytes]) -> bytes:
    """A DER SET OF: members sorted by their encodings (X.690 §11.6)."""
    return encode(SET, *sorted(members))
