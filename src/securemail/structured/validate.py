"""Validation of a structured document: read, identify, UBL schema, the business rules.

:func:`validate` is the one entry point the CLI, the JSON API, SMTP submission and the
receiving gateway use, so a document is judged the same way wherever it enters. The
report names which checks ran (``checks``), so nobody reads more into "valid" than was
checked: the schema check runs only where the UBL 2.1 schemas are installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from securemail.structured import billing, mlr, responses
from securemail.structured.documents import DocumentError, DocumentType, Kind, identify, parse
from securemail.structured.findings import Finding, Severity
from securemail.structured.schema import Schemas

CHECK_SCHEMA = "ubl-2.1-schema"
CHECK_BILLING = "a-nz-billing-rules-subset"
CHECK_RESPONSE = "invoice-response-rules-subset"
CHECK_MLR = "message-level-response-rules-subset"


@dataclass(frozen=True)
class Report:
    """The verdict: the type (None if the document could not be identified), the findings,
    and the checks that ran."""

    document_type: DocumentType | None
    findings: tuple[Finding, ...]
    checks: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        known = self.document_type is not None
        return known and not any(f.severity is Severity.FATAL for f in self.findings)

    @property
    def rules(self) -> list[str]:
        """The ids of the fatal findings, each once, in order."""
        fatal = (f.rule for f in self.findings if f.severity is Severity.FATAL)
        return list(dict.fromkeys(fatal))

    def as_json(self) -> dict[str, Any]:
        kind = self.document_type
        return {
            "valid": self.valid,
            "document_type": None if kind is None else kind.identifier,
            "kind": None if kind is None else kind.kind.value,
            "profile": None if kind is None else kind.profile,
            "checks": list(self.checks),
            "rules": self.rules,
            "findings": [
                {
                    "rule": f.rule,
                    "severity": f.severity.value,
                    "message": f.message,
                    "where": f.where,
                }
                for f in self.findings
            ],
        }


def validate(data: bytes, schemas: Schemas | None) -> Report:
    """Judge ``data``; never raises for a bad document (that is a finding)."""
    try:
        root = parse(data)
        kind = identify(root)
    except DocumentError as error:
        return Report(None, (Finding(error.reason.value, error.detail),))
    findings: list[Finding] = []
    checks: list[str] = []
    if schemas is not None:
        findings += schemas.check(root)
        checks.append(CHECK_SCHEMA)
    if kind.billing:
        findings += billing.check(root)
        checks.append(CHECK_BILLING)
    elif kind.kind is Kind.MESSAGE_LEVEL_RESPONSE:
        findings += mlr.check(root)
        checks.append(CHECK_MLR)
    else:
        findings += responses.check(root)
        checks.append(CHECK_RESPONSE)
    return Report(kind, tuple(findings), tuple(checks))
