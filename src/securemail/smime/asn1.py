"""ASN.1 types the profile needs that asn1crypto does not define (RFC 2634, 5084).

ESSSecurityLabel is not here: it is a SET whose privacy mark is an untagged CHOICE, which
asn1crypto's Set cannot decode; :mod:`securemail.smime.labels` reads it member by member.
"""

from __future__ import annotations

from asn1crypto import core, x509


class GCMParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 §3.2: the nonce and the authentication tag length."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("aes_nonce", core.OctetString),
        ("aes_icv_len", core.Integer, {"default": 12}),
    ]


class _GeneralNamesList(core.SequenceOf):  # type: ignore[misc]
    _child_spec = x509.GeneralNames


class ReceiptsFrom(core.Choice):  # type: ignore[misc]
    """RFC 2634 §2.7: who is asked for receipts: 0 = all, 1 = first tier, or a list."""

    _alternatives = [  # noqa: RUF012
        ("all_or_first_tier", core.Integer, {"implicit": 0}),
        ("receipt_list", _GeneralNamesList, {"implicit": 1}),
    ]


class ReceiptRequest(core.Sequence):  # type: ignore[misc]
    """RFC 2634 §2.7 ReceiptRequest signed attribute."""

    _fields = [  # noqa: RUF012
        ("signed_content_identifier", core.OctetString),
        ("receipts_from", ReceiptsFrom),
        ("receipts_to", _GeneralNamesList),
    ]


class Receipt(core.Sequence):  # type: ignore[misc]
    """RFC 2634 §2.7 Receipt: the content of a signed receipt."""

    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("content_type", core.ObjectIdentifier),
        ("signed_content_identifier", core.OctetString),
        ("originator_signature_value", core.OctetString),
    ]


class _Utf8Strings(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.UTF8String


class SealedFor(core.Sequence):  # type: ignore[misc]
    """SecureMail sealedFor signed attribute (docs/profile.md, "Recipient binding")."""

    _fields = [  # noqa: RUF012
        ("member", core.UTF8String),
        ("recipients", _Utf8Strings),
    ]


class IdentityVerification(core.Sequence):  # type: ignore[misc]
    """How the provider verified the holder's identity (docs/profile.md §2.2)."""

    _fields = [  # noqa: RUF012
        ("level", core.UTF8String),
        ("method", core.UTF8String),
        ("verified_on", core.GeneralizedTime),
    ]


class SenderAssurance(core.Sequence):  # type: ignore[misc]
    """SecureMail senderAssurance signed attribute (docs/profile.md §2.2)."""

    _fields = [  # noqa: RUF012
        ("provider", core.UTF8String),
        ("address", core.UTF8String),
        ("login", core.UTF8String),
        ("sole_use_since", core.GeneralizedTime, {"implicit": 0, "optional": True}),
        ("identity", IdentityVerification, {"implicit": 1, "optional": True}),
    ]
