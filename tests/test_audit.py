"""The hash-chained audit log: appending, verifying, and every kind of tampering it must show."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from securemail import audit
from tests.conftest import NOW


def write_log(path: Path, count: int = 4) -> list[audit.Head]:
    """Append ``count`` records a minute apart; return the head after each."""
    return [
        audit.append(
            path,
            "keys.backup",
            {"backup_id": f"b{n}", "keys": str(n)},
            now=NOW + timedelta(minutes=n),
        )
        for n in range(count)
    ]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_appended_records_verify(tmp_path: Path) -> None:
    """Records appended one after another form a chain that verifies, first link all zeros."""
    log = tmp_path / "audit.log"
    heads = write_log(log)
    check = audit.verify(log)
    assert check.ok and check.records == 4 and check.problem is None
    first = json.loads(lines_of(log)[0])
    assert first["prev"] == audit.GENESIS
    assert first["time"] == "2026-11-29T12:00:00.000000Z"
    assert list(first) == ["time", "event", "details", "prev"]
    assert [h.records for h in heads] == [1, 2, 3, 4]
    assert heads[-1].digest == audit.digest(lines_of(log)[-1].rstrip(b"\n"))
    assert log.stat().st_mode & 0o777 == 0o600


def test_edited_record_breaks_the_next_link(tmp_path: Path) -> None:
    """A record re-written in canonical form is caught where the next record links to it."""
    log = tmp_path / "audit.log"
    write_log(log)
    lines = lines_of(log)
    lines[1] = lines[1].replace(b'"keys":"1"', b'"keys":"9"')
    log.write_bytes(b"".join(lines))
    check = audit.verify(log)
    assert (check.broken_line, check.records) == (3, 2)
    assert "line 3 does not follow line 2" in str(check.problem)


def test_hand_edited_record_is_caught_on_its_own_line(tmp_path: Path) -> None:
    """An edit that leaves the record out of canonical form is caught on that very line."""
    log = tmp_path / "audit.log"
    write_log(log)
    lines = lines_of(log)
    lines[1] = lines[1].replace(b'"keys":"1"', b'"keys": "1"')
    log.write_bytes(b"".join(lines))
    check = audit.verify(log)
    assert check.broken_line == 2 and "canonical" in str(check.problem)


@pytest.mark.parametrize(("removed", "broken"), [(0, 1), (1, 2), (2, 3)])
def test_deleted_record_is_detected(tmp_path: Path, removed: int, broken: int) -> None:
    """Removing the first or a middle record breaks the chain at the line that took its place."""
    log = tmp_path / "audit.log"
    write_log(log)
    lines = lines_of(log)
    del lines[removed]
    log.write_bytes(b"".join(lines))
    assert audit.verify(log).broken_line == broken


def test_swapped_records_are_detected(tmp_path: Path) -> None:
    """Two records exchanged are caught at the first of them."""
    log = tmp_path / "audit.log"
    write_log(log)
    lines = lines_of(log)
    lines[1], lines[2] = lines[2], lines[1]
    log.write_bytes(b"".join(lines))
    assert audit.verify(log).broken_line == 2


def test_truncated_last_line_is_detected(tmp_path: Path) -> None:
    """A last line cut short (no line end) is reported as truncated, with its number."""
    log = tmp_path / "audit.log"
    write_log(log)
    data = log.read_bytes()
    log.write_bytes(data[: len(data) - 20])
    check = audit.verify(log)
    assert (check.broken_line, check.records) == (4, 3)
    assert "cut off" in str(check.problem)


def test_removed_or_replaced_tail_is_detected_against_a_kept_head(tmp_path: Path) -> None:
    """Dropping or rewriting the last record shows against the head append returned."""
    log = tmp_path / "audit.log"
    heads = write_log(log)
    whole = log.read_bytes()
    log.write_bytes(b"".join(lines_of(log)[:3]))
    check = audit.verify(log, heads[-1])
    assert check.broken_line == 4 and "removed from its end" in str(check.problem)
    lines = lines_of(log)
    lines[2] = lines[2].replace(b'"keys":"2"', b'"keys":"7"')
    log.write_bytes(b"".join(lines))
    assert audit.verify(log, heads[2]).broken_line == 3
    log.write_bytes(whole)
    assert audit.verify(log, heads[1]).ok, "an older head still holds after later appends"


def test_line_breaks_in_values_stay_on_one_line(tmp_path: Path) -> None:
    """CR and LF in a detail are escaped: the record stays one line and reads back intact."""
    log = tmp_path / "audit.log"
    forged = 'x\r\n{"time":"2026-11-29T00:00:00Z","event":"keys.restore","details":{}}\rmore'
    audit.append(log, "keys.export", {"subject": forged, "name": "Māori ✓"}, now=NOW)
    lines = lines_of(log)
    assert len(lines) == 1 and lines[0].count(b"\r") == 0 and lines[0].isascii()
    assert json.loads(lines[0])["details"]["subject"] == forged
    assert audit.verify(log).ok


def test_append_after_a_cut_off_line_keeps_the_damage_visible(tmp_path: Path) -> None:
    """A crash that cut the last record stays reported after later appends."""
    log = tmp_path / "audit.log"
    write_log(log, 2)
    log.write_bytes(log.read_bytes()[:-15])
    audit.append(log, "keys.restore", {"backup_id": "b9"}, now=NOW)
    assert len(lines_of(log)) == 3
    check = audit.verify(log)
    assert check.broken_line == 2 and "not an audit record" in str(check.problem)


def test_records_refuse_bad_names_values_and_naive_times(tmp_path: Path) -> None:
    """Event and detail names are plain, values are strings, and the time has a zone."""
    log = tmp_path / "audit.log"
    with pytest.raises(ValueError, match="timezone"):
        audit.append(log, "keys.backup", {}, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="event"):
        audit.append(log, "keys backup\n", {}, now=NOW)
    with pytest.raises(ValueError, match="detail"):
        audit.append(log, "keys.backup", {"Bad Key": "v"}, now=NOW)
    with pytest.raises(ValueError, match="detail"):
        audit.append(log, "keys.backup", {"count": 3}, now=NOW)  # type: ignore[dict-item]
    assert not log.exists()
