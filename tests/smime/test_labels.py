"""ESS security labels under the SecureMail policy."""

from __future__ import annotations

import pytest
from asn1crypto import core

from securemail.smime import Reason, SecurityLabel, SmimeError, der, oids
from securemail.smime.labels import CLASSIFICATIONS, decode_label, encode_label


@pytest.mark.parametrize("classification", [*CLASSIFICATIONS, None])
@pytest.mark.parametrize("mark", [None, "PERSONAL", "Māori data: tapu"])
def test_label_round_trips(classification: str | None, mark: str | None) -> None:
    """Every classification, with and without a privacy mark, decodes to what was encoded."""
    label = SecurityLabel(classification, mark)
    assert decode_label(encode_label(label)) == label


def test_marking_text() -> None:
    """The protective marking joins classification and endorsement."""
    assert SecurityLabel("IN-CONFIDENCE", "PERSONAL").marking == "IN-CONFIDENCE PERSONAL"
    assert SecurityLabel(None).marking == "UNMARKED"


@pytest.mark.parametrize(
    "args",
    [
        ("SECRET", None),
        ("IN-CONFIDENCE", ""),
        ("IN-CONFIDENCE", "A\r\nBcc: x"),
        ("IN-CONFIDENCE", "x" * 129),
    ],
)
def test_invalid_labels_refused_at_construction(args: tuple[str, str | None]) -> None:
    """Unknown classifications and control characters or oversize privacy marks are refused."""
    with pytest.raises(ValueError, match=r"classification|privacy mark"):
        SecurityLabel(*args)


def test_printable_string_privacy_mark_accepted() -> None:
    """A privacy mark encoded as PrintableString (the CHOICE's other arm) is read."""
    value = der.der_set(
        [
            der.oid(oids.SECUREMAIL_LABEL_POLICY),
            der.integer(2),
            bytes(core.PrintableString("PERSONAL").dump()),
        ]
    )
    assert decode_label(value) == SecurityLabel("IN-CONFIDENCE", "PERSONAL")


@pytest.mark.parametrize(
    "value",
    [
        der.der_set([der.oid("1.2.3.4"), der.integer(2)]),
        der.der_set([der.oid(oids.SECUREMAIL_LABEL_POLICY), der.integer(99)]),
        der.der_set([der.oid(oids.SECUREMAIL_LABEL_POLICY), der.octet_string(b"x").join()]),
        b"\x30\x00",
        b"\x31\x05\x06",
    ],
)
def test_foreign_or_broken_labels_refused(value: bytes) -> None:
    """Other policies, unknown classifications and broken encodings are malformed."""
    with pytest.raises(SmimeError) as refused:
        decode_label(value)
    assert refused.value.reason is Reason.MALFORMED
