"""Classification from protective markings: sources, precedence, conflicts, personal-use
domains, the markings we write, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.policy.labels import (
    Classified,
    classify,
    protective_marking,
    subject_marking,
)
from securemail.policy.model import OrgPolicy
from securemail.smime.labels import CLASSIFICATIONS, SecurityLabel

PLAIN = OrgPolicy()
PERSONAL_USE = OrgPolicy(personal_domains=("personaluse.agency.govt.nz",))
DEFAULTED = OrgPolicy(default_label="IN-CONFIDENCE")
SENDER = "alice@agency.govt.nz"


def message(*fields: str) -> bytes:
    return ("\r\n".join(["From: <alice@agency.govt.nz>", *fields]) + "\r\n\r\nBody.\r\n").encode()


def label_of(*fields: str, policy: OrgPolicy = PLAIN, sender: str = SENDER) -> Classified:
    return classify(message(*fields), policy, sender=sender)


def marking(value: str) -> str:
    return f"X-Protective-Marking: VER=2012.3, NS=gov.nz, {value}, ORIGIN={SENDER}"


def test_header_marking() -> None:
    """The X-Protective-Marking field's SEC and PRIVACY keywords give the label."""
    found = label_of(marking("SEC=SENSITIVE, PRIVACY=PERSONAL"), "Subject: Figures")
    assert found == Classified(SecurityLabel("SENSITIVE", "PERSONAL"), "header")


@pytest.mark.parametrize(
    ("subject", "classification", "privacy"),
    [
        ("Budget [SEC=IN-CONFIDENCE]", "IN-CONFIDENCE", None),
        ("Budget [IN-CONFIDENCE]", "IN-CONFIDENCE", None),
        ("Budget [in confidence]", "IN-CONFIDENCE", None),
        ("[sec=restricted, privacy=personal] Budget", "RESTRICTED", "PERSONAL"),
        ("RE: Budget [SEC=SENSITIVE,PRIVACY=PERSONAL]", "SENSITIVE", "PERSONAL"),
        ("Budget [PERSONAL]", None, "PERSONAL"),
        ("=?utf-8?q?Caf=C3=A9_budget_[SEC=RESTRICTED]?=", "RESTRICTED", None),
    ],
)
def test_subject_marking(subject: str, classification: str | None, privacy: str | None) -> None:
    """Markings people type in the Subject are read in any case, also RFC 2047-encoded."""
    found = label_of(f"Subject: {subject}")
    assert found == Classified(SecurityLabel(classification, privacy), "subject")


def test_other_brackets_are_not_markings() -> None:
    """Ordinary bracketed subject text such as [External] is neither a label nor a conflict."""
    assert label_of("Subject: [External] [JIRA-12] [a=b] lunch") == Classified(None, "none")


def test_header_and_subject_agreeing() -> None:
    """When both forms agree the header is the source and nothing is flagged."""
    found = label_of(marking("SEC=IN-CONFIDENCE"), "Subject: x [SEC=IN-CONFIDENCE]")
    assert found == Classified(SecurityLabel("IN-CONFIDENCE"), "header")


@pytest.mark.parametrize(
    ("header", "subject", "winner", "source"),
    [
        ("SENSITIVE", "IN-CONFIDENCE", "SENSITIVE", "header"),
        ("IN-CONFIDENCE", "RESTRICTED", "RESTRICTED", "subject"),
    ],
)
def test_disagreeing_markings_the_higher_wins(
    header: str, subject: str, winner: str, source: str
) -> None:
    """A header and subject that disagree give the higher classification, and say so."""
    found = label_of(marking(f"SEC={header}"), f"Subject: x [SEC={subject}]")
    assert found.label == SecurityLabel(winner) and found.source == source
    assert found.conflict is not None
    assert f"header says {header}" in found.conflict and f"subject says {subject}" in found.conflict
    assert f"{winner}, the higher, applies" in found.conflict


def test_two_header_fields_the_higher_wins() -> None:
    """A repeated X-Protective-Marking field (the standard allows one) gives the higher label."""
    found = label_of(marking("SEC=UNCLASSIFIED"), marking("SEC=SENSITIVE"))
    assert found.label == SecurityLabel("SENSITIVE")
    assert found.conflict is not None and "2 X-Protective-Marking fields" in found.conflict


def test_two_subject_markings_the_higher_wins() -> None:
    """A reply chain with several subject markings gets the highest of them."""
    found = label_of("Subject: RE: [IN-CONFIDENCE] FW: [SEC=SENSITIVE] plan")
    assert found.label == SecurityLabel("SENSITIVE")
    assert found.conflict is not None and "2 markings in the subject" in found.conflict


def test_unknown_classification_is_not_a_label() -> None:
    """A word SecureMail does not carry (SECRET) is not a label, and the sender is told."""
    found = label_of("Subject: [SEC=SECRET] plan")
    assert found.label is None and found.source == "none"
    assert found.conflict == "subject marking SEC='SECRET': not a classification SecureMail carries"


def test_unknown_classification_falls_back_to_the_default() -> None:
    """An unusable marking leaves the organisation's default in force."""
    found = label_of(marking("SEC=TOP SECRET"), policy=DEFAULTED)
    assert found.label == SecurityLabel("IN-CONFIDENCE") and found.source == "default"
    assert found.conflict is not None and "'TOP-SECRET'" in found.conflict


def test_default_label() -> None:
    """Unmarked mail gets the organisation's default label; without one it is unlabelled."""
    assert label_of("Subject: x", policy=DEFAULTED) == Classified(
        SecurityLabel("IN-CONFIDENCE"), "default"
    )
    assert label_of("Subject: x") == Classified(None, "none")


def test_marking_beats_the_default() -> None:
    """A marking on the message, lower or higher, replaces the organisation's default."""
    found = label_of("Subject: x [UNCLASSIFIED]", policy=DEFAULTED)
    assert found == Classified(SecurityLabel("UNCLASSIFIED"), "subject")


def test_personal_domain_marks_personal() -> None:
    """Mail from a personal-use domain is marked PERSONAL whatever else it carries."""
    policy = OrgPolicy(default_label="UNCLASSIFIED", personal_domains=PERSONAL_USE.personal_domains)
    sender = "Alice@PersonalUse.Agency.govt.nz"
    assert label_of("Subject: x", policy=PERSONAL_USE, sender=sender) == Classified(
        SecurityLabel(None, "PERSONAL"), "personal"
    )
    assert label_of("Subject: x", policy=policy, sender=sender) == Classified(
        SecurityLabel("UNCLASSIFIED", "PERSONAL"), "default"
    )
    found = label_of(marking("SEC=SENSITIVE, PRIVACY=STAFF"), policy=policy, sender=sender)
    assert found.label == SecurityLabel("SENSITIVE", "PERSONAL") and found.source == "header"
    assert found.conflict is not None and "STAFF replaced by PERSONAL" in found.conflict


def test_work_domain_is_not_personal() -> None:
    """Only the listed personal-use domains are marked PERSONAL, not the organisation's own."""
    assert label_of("Subject: x", policy=PERSONAL_USE) == Classified(None, "none")


def test_foreign_namespace_is_noted() -> None:
    """A marking in another government's namespace is read but flagged."""
    found = label_of("X-Protective-Marking: VER=2012.3, NS=gov.au, SEC=UNCLASSIFIED")
    assert found.label == SecurityLabel("UNCLASSIFIED")
    assert found.conflict == "header marking in namespace 'gov.au', not gov.nz"


def test_unreadable_header_keeps_the_default() -> None:
    """A header the strict reader refuses yields the default label and a note, not an error."""
    found = classify(b"not a field\r\nSubject: [SENSITIVE]\r\n\r\n", DEFAULTED, sender=SENDER)
    assert found.label == SecurityLabel("IN-CONFIDENCE") and found.source == "default"
    assert found.conflict == "header not read (malformed): markings ignored"


def test_message_that_is_all_header() -> None:
    """A message without a body (RFC 5322 §3.5) is still classified."""
    found = classify(b"Subject: [SENSITIVE]", PLAIN, sender=SENDER)
    assert found == Classified(SecurityLabel("SENSITIVE"), "subject")


def test_written_markings() -> None:
    """The header and subject forms we write follow the standard's keyword syntax."""
    label = SecurityLabel("IN-CONFIDENCE", "PERSONAL")
    assert protective_marking(label, origin=SENDER) == (
        "VER=2012.3, NS=gov.nz, SEC=IN-CONFIDENCE, PRIVACY=PERSONAL, ORIGIN=alice@agency.govt.nz"
    )
    assert subject_marking(SecurityLabel("SENSITIVE")) == "[SEC=SENSITIVE]"
    assert subject_marking(SecurityLabel(None, "PERSONAL")) == "[PRIVACY=PERSONAL]"


@pytest.mark.parametrize(
    ("label", "origin"),
    [
        (SecurityLabel("SENSITIVE"), "alice@agency.govt.nz\r\nBcc: x@y.nz"),
        (SecurityLabel("SENSITIVE"), "alice@agency.govt.nz, SEC=UNCLASSIFIED"),
        (SecurityLabel(None, "two words"), SENDER),
        (SecurityLabel(None), SENDER),
    ],
)
def test_written_markings_refuse_what_would_inject(label: SecurityLabel, origin: str) -> None:
    """A value that could add a field or a keyword, or an empty label, is refused."""
    with pytest.raises(ValueError):
        protective_marking(label, origin=origin)


LABELS = st.builds(
    SecurityLabel,
    st.sampled_from([None, *CLASSIFICATIONS]),
    st.sampled_from([None, "PERSONAL", "STAFF", "MEDICAL-IN-CONFIDENCE"]),
).filter(lambda label: label.classification is not None or label.privacy_mark is not None)


@given(LABELS)
def test_written_marking_reads_back(label: SecurityLabel) -> None:
    """What the sending gateway writes, the receiving gateway reads as the same label."""
    header = f"X-Protective-Marking: {protective_marking(label, origin=SENDER)}"
    assert label_of(header) == Classified(label, "header")
    assert label_of(f"Subject: Report {subject_marking(label)}") == Classified(label, "subject")


def _check(found: Classified) -> None:
    assert found.source in ("header", "subject", "default", "personal", "none")
    assert (found.label is None) == (found.source == "none")
    if found.conflict is not None:
        assert found.conflict.isprintable()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_hostile_bytes_never_raise(data: bytes) -> None:
    """Any bytes at all give a Classified (perhaps unlabelled), never an exception."""
    _check(classify(data, DEFAULTED, sender="x@personaluse.agency.govt.nz"))


TEXT = st.text(st.characters(codec="utf-8"), max_size=300)


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, st.booleans())
def test_hostile_markings_never_raise(header: str, subject: str, fold: bool) -> None:
    """Arbitrary text in the marking field and the Subject never raises, whatever it holds."""
    joiner = "\r\n " if fold else " "
    data = (
        f"X-Protective-Marking: SEC={header.replace(',', joiner)}\r\n"
        f"Subject: =?utf-8?q?{subject}?= [{subject}]\r\n\r\n"
    ).encode("utf-8", "surrogatepass")
    _check(classify(data, PERSONAL_USE, sender=subject))


def test_a_classification_securemail_does_not_carry_is_named_as_unsupported() -> None:
    """SEC=SECRET is not carried: it is named so the gateway can refuse it, not send it plain."""
    found = classify(
        b"From: a@agency.govt.nz\r\nSubject: [SEC=SECRET] plans\r\n\r\nx\r\n",
        OrgPolicy(),
        sender="a@agency.govt.nz",
    )
    assert (found.label, found.unsupported) == (None, "SECRET")
    carried = classify(
        b"Subject: [SEC=SECRET] [IN-CONFIDENCE] x\r\n\r\n", OrgPolicy(), sender="a@b.nz"
    )
    assert carried.unsupported is None
