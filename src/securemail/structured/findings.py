"""A rule's verdict on a document: the rule id, how grave, what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    FATAL = "fatal"  # the document is refused
    WARNING = "warning"  # reported, the document goes


@dataclass(frozen=True)
class Finding:
    """One failed rule: ``rule`` is the published id (e.g. ``BR-CO-15``) or the gateway's
    own (``SM-...``, see docs/structured.md), ``where`` a path in the document."""

    rule: str
    message: str
    where: str = "/"
    severity: Severity = Severity.FATAL

    def line(self) -> str:
        return f"[{self.rule}] {self.severity.value}: {self.message} (at {self.where})"
