"""Who an encrypted message is for, read without decrypting anything.

Two callers need the answer and neither holds the key. An upstream queue takes a member's
mail only as ciphertext (:func:`is_ciphertext`: one S/MIME entity whose CMS content is
EnvelopedData or AuthEnvelopedData, RFC 5652 §6, RFC 5083), so nothing it stores can be
read. A gateway that cannot decrypt a message for one of its organisations tells a key it
does not have installed from mail meant for another gateway (:func:`addressed_to`: a
RecipientInfo names one of the organisation's certificates by issuer and serial number or
by subject key identifier, RFC 5652 §6.2).
"""

from __future__ import annotations

from collections.abc import Iterable

from asn1crypto import cms
from cryptography import x509

from securemail.smime import der, limits, mime, oids
from securemail.smime.decrypt import envelope_fields, key_transport
from securemail.smime.errors import SmimeError
from securemail.smime.keys import issuer_and_serial, subject_key_identifier
from securemail.smime.verify import content_info

_ENVELOPES = (oids.ID_ENVELOPED_DATA, oids.ID_AUTH_ENVELOPED_DATA)


def _envelope_der(message: bytes, bounds: limits.Limits) -> bytes | None:
    """The DER of the message's one S/MIME entity if it is an envelope; None otherwise."""
    try:
        bounds.check_size(message)
        entity = mime.read_entity(message, bounds)
        limits.check_der(entity.der, bounds)
        if entity.detached_content is not None:
            return None  # multipart/signed: the content travels in the clear
        content_type, _ = content_info(entity.der)
    except (SmimeError, ValueError, TypeError):
        return None
    return entity.der if content_type in _ENVELOPES else None


def is_ciphertext(message: bytes, bounds: limits.Limits = limits.Limits()) -> bool:
    """Whether ``message`` is one ``application/pkcs7-mime`` entity holding an envelope."""
    return _envelope_der(message, bounds) is not None


def addressed_to(
    message: bytes,
    certificates: Iterable[x509.Certificate],
    bounds: limits.Limits = limits.Limits(),
) -> bool:
    """Whether the message's envelope has a RecipientInfo for one of ``certificates``."""
    data = _envelope_der(message, bounds)
    if data is None:
        return False
    certs = list(certificates)
    serials = {issuer_and_serial(c) for c in certs}
    identifiers = {k for c in certs if (k := subject_key_identifier(c)) is not None}
    try:
        content_type, envelope = content_info(data)
        fields = envelope_fields(data, envelope, content_type == oids.ID_AUTH_ENVELOPED_DATA)
        infos = der.children(data, fields[der.SET])
        return any(_names(data, info, serials, identifiers) for info in infos)
    except (SmimeError, ValueError, TypeError, KeyError):
        return False


def _names(data: bytes, info: der.Tlv, serials: set[bytes], identifiers: set[bytes]) -> bool:
    """Whether one RecipientInfo (key transport or key agreement) names a wanted key."""
    if info.tag == der.SEQUENCE:
        kind, value = key_transport(data, info).rid
        return value in (serials if kind == der.SEQUENCE else identifiers)
    choice = cms.RecipientInfo.load(der.value(data, info), strict=True)
    if choice.name != "kari":
        return False
    for rek in choice.chosen["recipient_encrypted_keys"]:
        rid = rek["rid"]
        if rid.name == "issuer_and_serial_number" and rid.chosen.dump() in serials:
            return True
        if rid.name == "r_key_id" and rid.chosen["subject_key_identifier"].native in identifiers:
            return True
    return False
