"""The conformance report: each requirement id with pass or fail and the evidence, signed.

A finding is one observation about one requirement in one case. A requirement passes when
at least one finding supports it and none contradicts it; it fails when any finding does.
The report is RFC 8785 canonical JSON, signed by the tester with a detached CMS SignedData
(DER), which ``openssl cms -verify -binary -inform DER -in report.json.p7s -content
report.json -CAfile federation-ca.pem`` checks. Beside it, :func:`report_page` renders the
same document as a readable HTML page (autoescaped: every value in it came from the gateway
under test or the evidence about it). Pure: findings and ``now`` in, bytes out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from jinja2 import Environment, PackageLoader, select_autoescape

from securemail.smime import SignerIdentity
from securemail.smime.sign import sign

FORMAT = "securemail-conformance/1"
_PAGES = Environment(
    loader=PackageLoader("securemail.conformance", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
PROFILE_VERSION = "1.1"  # docs/profile.md §14 and "Changes"


@dataclass(frozen=True)
class Finding:
    """``requirement`` held (``passed``) or not in ``case``, as ``evidence`` says."""

    requirement: str
    case: str
    passed: bool
    evidence: str


@dataclass(frozen=True)
class Verdict:
    """One requirement's result over all findings."""

    requirement: str
    passed: bool
    evidence: tuple[str, ...]


def verdicts(findings: Sequence[Finding]) -> list[Verdict]:
    """Each requirement that has findings, in id order: failed if any finding failed."""
    by_id: dict[str, list[Finding]] = {}
    for finding in findings:
        by_id.setdefault(finding.requirement, []).append(finding)
    return [
        Verdict(
            requirement,
            all(f.passed for f in found),
            tuple(f"{f.case}: {'pass' if f.passed else 'FAIL'}: {f.evidence}" for f in found),
        )
        for requirement, found in sorted(by_id.items(), key=lambda item: _order(item[0]))
    ]


def _order(requirement: str) -> tuple[str, int]:
    prefix, _, number = requirement.rpartition("-")
    return prefix, int(number) if number.isdigit() else 0


def report_document(
    *,
    tester: str,
    member: str,
    target: str,
    started: datetime,
    finished: datetime,
    findings: Sequence[Finding],
    cases: Sequence[dict[str, str]],
) -> bytes:
    """The report as canonical JSON."""
    results = verdicts(findings)
    document: dict[str, Any] = {
        "format": FORMAT,
        "profile": PROFILE_VERSION,
        "tester": tester,
        "member": member,
        "target": target,
        "started": _time(started),
        "finished": _time(finished),
        "result": "pass" if results and all(v.passed for v in results) else "fail",
        "requirements": [_requirement(v) for v in results],
        "cases": list(cases),
    }
    return bytes(rfc8785.dumps(document))


def _requirement(verdict: Verdict) -> dict[str, Any]:
    result = "pass" if verdict.passed else "fail"
    return {"id": verdict.requirement, "result": result, "evidence": list(verdict.evidence)}


def sign_report(document: bytes, signer: SignerIdentity, now: datetime) -> bytes:
    """The tester's detached CMS signature over ``document`` (DER)."""
    return sign(document, signer, now=now, detached=True).der.join()


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_page(document: bytes) -> bytes:
    """The report (its canonical JSON) as a readable HTML page, each requirement with its
    result and evidence: the same content, not a second source of truth."""
    value = json.loads(document)
    return _PAGES.get_template("report.html").render(report=value).encode("utf-8")
