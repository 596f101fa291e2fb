"""DER framing for large values without copying them.

CMS wraps the message body in four or five layers of tag-length headers. Building those
layers by concatenation copies the body once per layer; :class:`Chunks` keeps the layers as
a list of byte strings with a known total length, so the body is copied once, when the
final value is joined (or never, when the chunks are streamed into a cipher).

Only definite-length DER is produced here. Reading is shallow: :func:`read` and
:func:`children` hand back offsets (following the indefinite-length BER that gpgsm and
streaming OpenSSL write), and the CMS layers, SignerInfo, signed attributes and
key-transport RecipientInfos are read that way, each field's tag checked by its reader;
asn1crypto parses the small nested types that need more (RSA-PSS and OAEP parameters, GCM
parameters, times, labels, receipt requests, key agreement). Every input has passed
:func:`securemail.smime.limits.check_der` first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import NamedTuple

from asn1crypto import core

from securemail.smime.errors import Reason, SmimeError

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

    def __init__(self, parts: list[bytes], length: int | None = None) -> None:
        """``length``, when given, must be the parts' total (the framing already knows it)."""
        self.parts = parts
        self._length = sum(map(len, parts)) if length is None else length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def join(self) -> bytes:
        return b"".join(self.parts)


def tlv(tag: int, *children: bytes | Chunks) -> Chunks:
    """Wrap children (already-encoded values) in one constructed or primitive value."""
    parts: list[bytes] = [b""]  # the header's place
    length = 0
    for child in children:
        if isinstance(child, Chunks):
            parts.extend(child.parts)
        else:
            parts.append(child)
        length += len(child)
    parts[0] = header(tag, length)
    return Chunks(parts, length + len(parts[0]))


def encode(tag: int, *children: bytes | Chunks) -> bytes:
    """Like :func:`tlv` but joined: for small values."""
    return tlv(tag, *children).join()


@lru_cache(maxsize=256)
def oid(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER (cached: the profile uses a few dozen)."""
    return bytes(core.ObjectIdentifier(dotted).dump())


@lru_cache(maxsize=1024)
def integer(value: int) -> bytes:
    """DER INTEGER (cached: versions, tag lengths and the serials of known certificates)."""
    return bytes(core.Integer(value).dump())


def octet_string(value: bytes | Chunks) -> Chunks:
    return tlv(OCTET_STRING, value)


def der_set(members: Iterable[bytes]) -> bytes:
    """A DER SET OF: members sorted by their encodings (X.690 §11.6)."""
    return encode(SET, *sorted(members))


MAX_READ_DEPTH = 32


class Tlv(NamedTuple):
    """Where one value lies in a buffer: its tag, and its contents ``data[start:end]``."""

    tag: int
    header: int  # offset of the tag octet
    start: int
    end: int
    after: int  # where the next value starts: ``end``, or ``end + 2`` past an end-of-contents


def read(data: bytes, pos: int = 0, limit: int | None = None, depth: int = 0) -> Tlv:
    """Read the value at ``pos`` without copying it; BER indefinite lengths are followed.

    This is the shallow reader for the big outer layers of CMS: it hands back offsets, so a
    10 MiB body is never sliced until the caller asks for it (once).
    """
    limit = len(data) if limit is None else limit
    if pos + 2 > limit:
        raise SmimeError(Reason.MALFORMED, "DER value truncated")
    header = pos
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first == 0x80:  # indefinite: the contents run to an end-of-contents marker
        if not tag & 0x20 or depth >= MAX_READ_DEPTH:
            raise SmimeError(Reason.MALFORMED, "indefinite length where not allowed")
        cursor = pos
        while data[cursor : cursor + 2] != b"\x00\x00":
            cursor = read(data, cursor, limit, depth + 1).after
        return Tlv(tag, header, pos, cursor, cursor + 2)
    length = first
    if first > 0x80:
        size = first & 0x7F
        if size > 4 or pos + size > limit:
            raise SmimeError(Reason.MALFORMED, "DER length field too long or truncated")
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > limit:
        raise SmimeError(Reason.MALFORMED, "DER value overruns its container")
    return Tlv(tag, header, pos, pos + length, pos + length)


def children(data: bytes, parent: Tlv) -> list[Tlv]:
    """The values directly inside a constructed ``parent``."""
    found: list[Tlv] = []
    cursor, end = parent.start, parent.end
    while cursor < end:
        # Most values are short (length below 128): read those here, the rest with read().
        first = data[cursor + 1] if cursor + 2 <= end else 0x80
        after = cursor + 2 + first
        if first < 0x80 and after <= end:
            found.append(Tlv(data[cursor], cursor, cursor + 2, after, after))
        else:
            found.append(read(data, cursor, end))
            after = found[-1].after
        cursor = after
    return found


def value(data: bytes, tlv: Tlv) -> bytes:
    """The complete encoding (header and contents) of a small value, as bytes."""
    return bytes(data[tlv.header : tlv.after])


def dotted(data: bytes, tlv: Tlv) -> str:
    """The dotted form of the OBJECT IDENTIFIER at ``tlv``; ValueError if it is not one."""
    if tlv.tag != OBJECT_IDENTIFIER:
        raise ValueError(f"tag {tlv.tag:#x} where an OBJECT IDENTIFIER was expected")
    return _dotted(value(data, tlv))


@lru_cache(maxsize=512)
def _dotted(encoded: bytes) -> str:
    """Cached: messages carry the same few dozen OIDs."""
    return str(core.ObjectIdentifier.load(encoded, strict=True).dotted)


def algorithm(data: bytes, identifier: Tlv) -> tuple[str, bytes]:
    """An AlgorithmIdentifier: (dotted OID, the parameters' DER or b"" when absent)."""
    parts = children(data, identifier)
    if not 1 <= len(parts) <= 2 or parts[0].tag != OBJECT_IDENTIFIER:
        raise SmimeError(Reason.MALFORMED, "AlgorithmIdentifier")
    return dotted(data, parts[0]), value(data, parts[1]) if len(parts) == 2 else b""


def octets(data: bytes, tlv: Tlv) -> bytes | memoryview:
    """The octets of an OCTET STRING (or implicitly tagged one), joining BER chunks.

    A primitive value comes back as a memoryview of ``data``: no copy.
    """
    if not tlv.tag & 0x20:
        return memoryview(data)[tlv.start : tlv.end]
    return b"".join(bytes(octets(data, child)) for child in children(data, tlv))
