"""The conformance report: verdicts from findings, canonical JSON, a signature OpenSSL checks."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from securemail.conformance.report import (
    Finding,
    report_document,
    report_page,
    sign_report,
    verdicts,
)
from tests.conftest import NOW, Pki, require_tool

FINDINGS = [
    Finding("SM-RECV-2", "tampered", True, "notice: integrity-failed"),
    Finding("SM-RECV-10", "x", True, "later id"),
    Finding("SM-FAIL-1", "tampered", True, "notice names integrity-failed"),
    Finding("SM-FAIL-1", "wrong-signer", False, "no notice"),
]


def test_a_requirement_fails_when_any_finding_fails() -> None:
    """One failed finding fails its requirement; the others pass; ids sort by number."""
    found = {v.requirement: v for v in verdicts(FINDINGS)}
    assert not found["SM-FAIL-1"].passed and found["SM-RECV-2"].passed
    assert "wrong-signer: FAIL: no notice" in found["SM-FAIL-1"].evidence
    assert [v.requirement for v in verdicts(FINDINGS)] == ["SM-FAIL-1", "SM-RECV-2", "SM-RECV-10"]


def test_report_is_canonical_and_says_fail() -> None:
    """The report is RFC 8785 canonical JSON whose result is fail when a requirement failed."""
    document = report_document(
        tester="conformance", member="agency", target="127.0.0.1:25", started=NOW,
        finished=NOW, findings=FINDINGS, cases=[{"name": "tampered"}],
    )  # fmt: skip
    value = json.loads(document)
    assert json.dumps(value, sort_keys=True, separators=(",", ":")).encode() == document
    assert value["result"] == "fail" and value["profile"] == "1.1"
    passed = report_document(
        tester="t", member="m", target="h:1", started=NOW, finished=NOW,
        findings=FINDINGS[:3], cases=[],
    )  # fmt: skip
    assert json.loads(passed)["result"] == "pass"


def test_report_signature_verifies_with_openssl_and_fails_when_changed(
    pki: Pki, tmp_path: Path
) -> None:
    """`openssl cms -verify` accepts the tester's detached signature, refuses an edited report."""
    openssl = require_tool("openssl")
    document = report_document(
        tester="t", member="m", target="h:1", started=NOW, finished=NOW, findings=FINDINGS,
        cases=[],
    )  # fmt: skip
    (tmp_path / "report.json").write_bytes(document)
    (tmp_path / "report.json.p7s").write_bytes(sign_report(document, pki.agency.signer, NOW))
    ca, _ = pki.write_ca(tmp_path)
    attime = str(int(datetime(2026, 11, 29, 13, tzinfo=UTC).timestamp()))
    command = [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", "report.json.p7s",
               "-content", "report.json", "-CAfile", str(ca), "-attime", attime,
               "-out", "/dev/null"]  # fmt: skip
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, check=False).returncode == 0
    (tmp_path / "report.json").write_bytes(document.replace(b'"fail"', b'"pass"'))
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, check=False).returncode != 0


def test_report_page_shows_each_requirement_and_escapes_the_evidence() -> None:
    """The HTML page has a row per requirement with its result and evidence; evidence that
    came from the gateway under test is escaped, never markup."""
    hostile = Finding("SM-FAIL-2", "unknown-mailbox", False, '<script>alert("x")</script>')
    document = report_document(
        tester="t", member="m<b>", target="h:1", started=NOW, finished=NOW,
        findings=[*FINDINGS, hostile], cases=[{"name": "plaintext", "title": "a <i>plain</i>",
                                               "message_id": "<x@y>"}],
    )  # fmt: skip
    page = report_page(document).decode()
    for verdict in verdicts([*FINDINGS, hostile]):
        assert f'<tr id="{verdict.requirement}">' in page
    assert '<td class="fail">fail</td>' in page and '<td class="pass">pass</td>' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "m&lt;b&gt;" in page and "&lt;x@y&gt;" in page and "<i>" not in page
