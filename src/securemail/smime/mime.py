"""The MIME face of S/MIME (RFC 8551 §3): entities in, DER out, and back.

Bytes in, bytes out, CRLF throughout. Headers are read by a small strict reader rather
than the ``email`` package, so that a large body is never copied or re-serialised and an
odd header cannot change what is parsed. Only the shapes S/MIME uses are accepted:
``application/pkcs7-mime`` (opaque signed, enveloped, auth-enveloped, signed receipt) and
``multipart/signed`` with exactly two parts (RFC 1847). Anything else is not S/MIME.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from email.message import Message
from functools import lru_cache

import pybase64

from securemail.smime.errors import Reason, SmimeError
from securemail.smime.limits import Limits

CRLF = b"\r\n"
PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
PKCS7_SIGNATURE = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_FIELD_NAME = re.compile(rb"[!-9;-~]+")

Fields = list[tuple[str, bytes]]


def canonicalize(data: bytes) -> bytes:
    """Return ``data`` with every line ending as CRLF (RFC 5322 §2.3; bare CR/LF repaired)."""
    if data.count(b"\n") == data.count(CRLF) == data.count(b"\r"):
        return data
    return _LINE_ENDS.sub(CRLF, data)


def split_header(data: bytes, limits: Limits) -> tuple[bytes, bytes]:
    """Split at the first empty line: (header block, CRLF-canonical, ending in CRLF; body).

    Line ends in the header may be LF (files written by Unix tools); the body is returned
    untouched, because a binary body must not be altered.
    """
    block, start = _header_block(data, limits)
    return block, data[start:]


def _header_block(data: bytes, limits: Limits) -> tuple[bytes, int]:
    """(header block as :func:`split_header` returns it, where the body starts)."""
    found = _empty_line(data, limits.max_header_bytes + 4)
    if found is None:
        if len(data) > limits.max_header_bytes:
            raise SmimeError(Reason.TOO_LARGE, f"header over {limits.max_header_bytes} bytes")
        raise SmimeError(Reason.MALFORMED, "no empty line after the header")
    start, end = found
    if start == 0:
        return b"", end
    return canonicalize(data[:start]) + CRLF, end


def _empty_line(data: bytes, limit: int) -> tuple[int, int] | None:
    """Where the first empty line lies within ``data[:limit]``: (start of the line end before
    it, end of its own line end); None if there is none.

    Line ends are CRLF or LF. An empty first line is one at 0; any other follows the LF of
    the line before, so it is the first ``LF LF`` or ``LF CRLF``, found with ``find`` (in C,
    the CRLF form first: the second search then stops where it was found).
    """
    for empty in (b"\r\n", b"\n"):
        if data.startswith(empty, 0, limit):
            return 0, len(empty)
    crlf = data.find(b"\n\r\n", 0, limit)
    lf = data.find(b"\n\n", 0, limit if crlf < 0 else crlf + 2)
    at, end = (lf, lf + 2) if lf >= 0 else (crlf, crlf + 3)
    if at < 0:
        return None
    return (at - 1 if data[at - 1 : at] == b"\r" else at), end


def header_fields(block: bytes, limits: Limits) -> Fields:
    """Parse a header block into (name, unfolded raw value) pairs, in order."""
    fields: Fields = []
    for line in block.split(CRLF)[:-1] if block else ():
        if line[:1] in (b" ", b"\t") and fields:
            previous, value = fields[-1]
            fields[-1] = (previous, value + b" " + line.strip())
            continue
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(raw_name):
            raise SmimeError(Reason.MALFORMED, "a header line is not a field")
        fields.append((raw_name.decode("ascii"), raw_value.strip()))
        if len(fields) > limits.max_header_fields:
            raise SmimeError(Reason.TOO_LARGE, f"more than {limits.max_header_fields} fields")
    return fields


def field(fields: Fields, name: str) -> bytes | None:
    """The value of the only field called ``name``; None if absent; refuse duplicates."""
    values = [v for n, v in fields if n.lower() == name.lower()]
    if len(values) > 1:
        raise SmimeError(Reason.MALFORMED, f"{len(values)} {name} fields")
    return values[0] if values else None


def content_type(fields: Fields) -> tuple[str, dict[str, str]]:
    """(lower-case type/subtype, parameters) of the Content-Type field (default text/plain)."""
    raw = field(fields, "Content-Type")
    if raw is None:
        return "text/plain", {}
    mime_type, params = _parse_content_type(raw)
    return mime_type, dict(params)


@lru_cache(maxsize=256)
def _parse_content_type(raw: bytes) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Cached: the email package's parser costs more than the rest of reading an entity,
    and a gateway sees the same few Content-Type values (all but multipart boundaries)."""
    message = Message()
    message["Content-Type"] = raw.decode("ascii", "replace")
    params = {str(k).lower(): str(v) for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), tuple(params.items())


def encode_base64(data: bytes) -> bytes:
    """Base64 in 76-character CRLF lines (RFC 2045 §6.8)."""
    return pybase64.encodebytes(data).replace(b"\n", CRLF)


def decode_base64(data: bytes | memoryview) -> bytes:
    """Decode a base64 body; characters outside the alphabet (line breaks) are skipped."""
    try:
        return pybase64.b64decode(data)
    except ValueError:
        raise SmimeError(Reason.MALFORMED, "base64 body is not valid base64") from None


def decode_body(fields: Fields, body: bytes | memoryview) -> bytes:
    encoding = (field(fields, "Content-Transfer-Encoding") or b"7bit").strip().lower()
    if encoding == b"base64":
        return decode_base64(body)
    if encoding in (b"binary", b"8bit", b"7bit"):
        return bytes(body)
    raise SmimeError(Reason.MALFORMED, f"transfer encoding {encoding!r} for S/MIME content")


def entity_header(smime_type: str, *, binary: bool = False) -> bytes:
    """The Content-* fields of an application/pkcs7-mime entity (RFC 8551 §3.2)."""
    return (
        f'Content-Type: application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"\r\n'
        f"Content-Transfer-Encoding: {'binary' if binary else 'base64'}\r\n"
        'Content-Disposition: attachment; filename="smime.p7m"\r\n'
    ).encode("ascii")


@dataclass(frozen=True)
class Entity:
    """A parsed S/MIME entity: its header fields, its CMS DER, and detached content if any."""

    fields: Fields
    der: bytes
    detached_content: bytes | None = None


def read_entity(data: bytes, limits: Limits) -> Entity:
    """Read an S/MIME entity (a whole message or the decrypted inner entity)."""
    block, start = _header_block(data, limits)
    fields = header_fields(block, limits)
    mime_type, params = content_type(fields)
    if mime_type in PKCS7_MIME:
        # A view of the body: base64 is decoded where it lies, not from a copy of it.
        return Entity(fields, decode_body(fields, memoryview(data)[start:]))
    if mime_type == "multipart/signed":  # the signed part is checked in canonical form
        return _read_multipart_signed(fields, params, canonicalize(data[start:]), limits)
    raise SmimeError(Reason.NOT_SIGNED, f"{mime_type} is not an S/MIME entity")


def _read_multipart_signed(
    fields: Fields, params: dict[str, str], body: bytes, limits: Limits
) -> Entity:
    protocol = params.get("protocol", "").lower()
    boundary = params.get("boundary", "").encode("ascii", "replace")
    if protocol not in PKCS7_SIGNATURE or not 1 <= len(boundary) <= 70:
        raise SmimeError(
            Reason.MALFORMED, "multipart/signed without an S/MIME protocol or boundary"
        )
    parts = _split_parts(body, boundary)
    if len(parts) != 2:
        raise SmimeError(Reason.MALFORMED, f"multipart/signed with {len(parts)} parts")
    content, signature = parts
    sig_block, sig_body = split_header(signature, limits)
    sig_fields = header_fields(sig_block, limits)
    if content_type(sig_fields)[0] not in PKCS7_SIGNATURE:
        raise SmimeError(Reason.MALFORMED, "second part of multipart/signed is not a signature")
    return Entity(fields, decode_body(sig_fields, sig_body), detached_content=content)


def _split_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """Split a multipart body (RFC 2046 §5.1.1) into its parts, exactly as received."""
    delimiter = b"--" + boundary
    candidates = [0] if body.startswith(delimiter) else []
    search = 0
    while (hit := body.find(CRLF + delimiter, search)) >= 0:
        candidates.append(hit + 2)
        search = hit + 2
    lines: list[tuple[int, int]] = []  # (start, end) of each delimiter line
    for start in candidates:
        end = body.find(CRLF, start)
        end = len(body) if end < 0 else end
        rest = body[start + len(delimiter) : end].rstrip(b" \t")
        if rest == b"--":  # close delimiter: what follows is the epilogue
            lines.append((start, end))
            return [
                body[a_end + 2 : b_start - 2]
                for (_, a_end), (b_start, _) in itertools.pairwise(lines)
            ]
        if not rest:
            lines.append((start, end))
    raise SmimeError(Reason.MALFORMED, "multipart body without its close delimiter")
