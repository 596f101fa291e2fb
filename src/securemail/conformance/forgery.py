"""The kit's forgeries: a valid test message changed in exactly one way a gateway must catch.

Pure: a protected message (or what it is made of) in, bytes or a signer out. Each change is
the smallest that defeats one check, so a gateway that delivers the result has skipped
exactly that check: a flipped ciphertext byte (the GCM tag, SM-RECV-2), a flipped byte of
the signed content re-encrypted with a fresh, valid tag (the signature, SM-RECV-5), a signer
from a root the federation never trusted (the chain, SM-RECV-5).
"""

from __future__ import annotations

import base64
from datetime import datetime

from cryptography import x509

from securemail.pki.authority import issue, make_root_ca
from securemail.smime import ProtectOptions, SignerIdentity, protect
from securemail.smime.encrypt import encrypt
from securemail.smime.message import sign_message
from securemail.smime.mime import CRLF, encode_base64, entity_header


def tamper(wire: bytes) -> bytes:
    """``wire`` with one byte of its encrypted content flipped (the outer base64 re-made)."""
    head, _, body = wire.partition(CRLF + CRLF)
    envelope = bytearray(base64.b64decode(body))
    envelope[len(envelope) - 40] ^= 0x01  # inside the encrypted content, before the GCM tag
    return head + CRLF + CRLF + encode_base64(bytes(envelope))


def tamper_signed(
    message: bytes,
    signer: SignerIdentity,
    encryption: x509.Certificate,
    marker: bytes,
    *,
    now: datetime,
    options: ProtectOptions,
) -> bytes:
    """``message`` signed, then one byte of ``marker`` in the signed content flipped, then
    encrypted afresh: it decrypts and its GCM tag is good, only the signature is broken."""
    head = protect(message, signer, [encryption], now=now, options=options).message
    outer = head.partition(CRLF + CRLF)[0]
    signed = sign_message(message, signer, now=now, options=options).message
    data = bytearray(base64.b64decode(signed.partition(CRLF + CRLF)[2]))
    at = bytes(data).find(marker)
    if at < 0:
        raise ValueError("the marker is not in the signed content")
    data[at] ^= 0x01
    entity = entity_header("signed-data") + CRLF + encode_base64(bytes(data))
    envelope = encrypt(entity, [encryption], cipher=options.cipher).join()
    return outer + CRLF + CRLF + encode_base64(envelope)


def rogue_signer(org_id: str, domain: str, now: datetime) -> SignerIdentity:
    """A certificate in the tester's name from a root the federation never trusted."""
    root = make_root_ca("Conformance rogue root (not a federation anchor)", now=now)
    issued = issue(
        root,
        f"{org_id} (rogue)",
        now=now,
        domains=[domain],
        emails=[f"gateway@{domain}"],
    )
    return SignerIdentity(issued.certificate, issued.private_key)
