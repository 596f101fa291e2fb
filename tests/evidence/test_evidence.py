"""The evidence record: one canonical JSON form, read back strictly."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.evidence import MAX_EVIDENCE_BYTES, Evidence, EvidenceError, EvidenceReason
from tests.evidence.conftest import Exchange


def _refused(data: bytes) -> EvidenceReason:
    with pytest.raises(EvidenceError) as refused:
        Evidence.from_json(data)
    return refused.value.reason


def test_round_trip_is_canonical_json(sent: Exchange) -> None:
    """The record survives JSON, written with sorted keys and no white space (RFC 8785)."""
    data = sent.evidence.to_json()
    assert Evidence.from_json(data) == sent.evidence
    value = json.loads(data)
    assert list(value) == sorted(value)
    assert value["version"] == 1
    assert value["delivered_at"] == "2026-11-29T12:00:00Z"
    assert b" " not in data and b"\n" not in data


def test_microseconds_and_missing_message_id_survive(sent: Exchange) -> None:
    """A delivery time with microseconds and a message without Message-ID round-trip."""
    evidence = replace(
        sent.evidence,
        original_message_id=None,
        delivered_at=datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC),
    )
    assert Evidence.from_json(evidence.to_json()) == evidence


def _edited(sent: Exchange, **changes: object) -> bytes:
    value = json.loads(sent.evidence.to_json()) | changes
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def test_keys_types_and_values_are_exact(sent: Exchange) -> None:
    """Unknown, missing or mistyped fields and bad values are refused as evidence-malformed."""
    value = json.loads(sent.evidence.to_json())
    del value["recipient"]
    cases = [
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
        _edited(sent, extra="x"),
        _edited(sent, version=2),
        _edited(sent, version=True),
        _edited(sent, recipient=7),
        _edited(sent, original_message_id=["<a@b>"]),
        _edited(sent, content_digest="sha1:00"),
        _edited(sent, content_identifier="ABC"),
        _edited(sent, delivered_at="2026-11-29T12:00:00+13:00"),
        _edited(sent, delivered_at="2026-13-29T12:00:00Z"),
        _edited(sent, recipient="bob@ministry.govt.nz\r\nBcc: eve@example.com"),
        b"[]",
        b"not json",
        b'{"version":NaN}',
        b"[" * 4000 + b"]" * 4000,
        sent.evidence.to_json().replace(b",", b", "),  # valid JSON, not canonical
        sent.evidence.to_json().decode().encode("utf-16"),
    ]
    for data in cases:
        assert _refused(data) is EvidenceReason.EVIDENCE_MALFORMED, data[:80]


def test_oversize_refused_before_parsing() -> None:
    """Evidence over 8 KiB is refused as receipt-too-large without being parsed."""
    assert _refused(b" " * (MAX_EVIDENCE_BYTES + 1)) is EvidenceReason.TOO_LARGE


def test_constructor_refuses_values_that_could_break_a_header(sent: Exchange) -> None:
    """Evidence with a line break, a local time or a bad digest cannot be made."""
    for changes in (
        {"recipient": "bob@x\r\nBcc: eve@x"},
        {"original_message_id": "<a@b>\r\nBcc: <c@d>"},
        {"receiving_org": "ministry\n"},
        {"delivered_at": datetime(2026, 11, 29, 12, tzinfo=timezone(timedelta(hours=13)))},
        {"content_digest": "sha256:" + "0" * 63},
    ):
        with pytest.raises(ValueError):
            replace(sent.evidence, **changes)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_only_evidence_errors(data: bytes) -> None:
    """Whatever a peer sends as evidence, reading it raises EvidenceError or succeeds."""
    with contextlib.suppress(EvidenceError):
        Evidence.from_json(data)


_TEXT = st.text(st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(
    mid=st.none() | _TEXT,
    local=_TEXT,
    identifier=st.binary(min_size=1, max_size=128),
    moment=st.datetimes(timezones=st.just(UTC)),
)
def test_any_valid_record_round_trips(
    sent: Exchange, mid: str | None, local: str, identifier: bytes, moment: datetime
) -> None:
    """Every record that can be made reads back equal, including non-ASCII addresses."""
    evidence = replace(
        sent.evidence,
        original_message_id=mid,
        recipient=f"{local}@ministry.govt.nz",
        content_identifier=identifier.hex(),
        delivered_at=moment,
    )
    assert Evidence.from_json(evidence.to_json()) == evidence
