"""The policy settings, as values: what an organisation and a node declare (issue: labels).

Parsed from the node configuration ([organisation.policy], [node] region and
allow_offshore_labelled) and handed to the pure decisions in this package.
"""

from __future__ import annotations

from dataclasses import dataclass

from securemail.policy.assurance import AssuranceRule
from securemail.smime.labels import CLASSIFICATIONS, SecurityLabel


@dataclass(frozen=True)
class OrgPolicy:
    """One organisation's rules for the mail it sends."""

    default_label: str | None = None  # the classification of mail that carries none
    secure_from: str = "IN-CONFIDENCE"  # this classification and above never leave SecureMail
    allowed_regions: tuple[str, ...] = ("NZ",)  # where labelled mail may be relayed
    personal_domains: tuple[str, ...] = ()  # sender domains whose mail is marked PERSONAL
    # What mail from outside must carry of sender assurance (securemail.policy.assurance)
    assurance: tuple[AssuranceRule, ...] = ()

    def __post_init__(self) -> None:
        for name in (self.default_label, self.secure_from):
            if name is not None and name not in CLASSIFICATIONS:
                known = ", ".join(CLASSIFICATIONS)
                raise ValueError(f"unknown classification {name!r} (known: {known})")

    def requires_securemail(self, label: SecurityLabel | None) -> bool:
        """Whether mail with ``label`` may travel only inside SecureMail (fail closed)."""
        if label is None or label.classification is None:
            return False
        return CLASSIFICATIONS[label.classification] >= CLASSIFICATIONS[self.secure_from]


@dataclass(frozen=True)
class NodePolicy:
    """Where this node stores mail, and whether the operator lets labelled mail stay offshore."""

    region: str = "NZ"
    allow_offshore_labelled: bool = False
