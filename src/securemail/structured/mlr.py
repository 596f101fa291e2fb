"""PEPPOL Message Level Response (MLR 3.0, UBL ApplicationResponse): written, read, checked.

The receiving gateway writes one when it refuses a structured document on receipt (the
document failed validation there): response code ``RE``, one line response per failed
rule (its id and message, the place in the document, ``BV`` for a business rule, ``SV``
for the schema or XML, ``BW`` for a warning). The document reference is the refused
message's Message-ID, the MLR's "envelope identifier" in SecureMail. The sending gateway
reads it to note the refusal on the original's timeline. The checks are the gateway's own
(``SM-MLR-*``, docs/structured.md), not PEPPOL's.

Pure: values in, bytes or findings out; the time is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from securemail.structured.documents import MLR, MLR_PROFILE, NS, RESPONSE_NS, text
from securemail.structured.findings import Finding, Severity

CODES = {"AB": "acknowledged", "AP": "accepted", "RE": "rejected"}
SYNTAX_RULES = ("UBL-SCHEMA", "document-not-xml", "document-too-big", "document-type-unknown")
CHECKED = ("SM-MLR-01", "SM-MLR-02", "SM-MLR-03", "SM-MLR-04")
EMAIL_SCHEME = "EM"  # EAS code list: electronic mail, the parties' SecureMail addresses
_RESPONSE = "cac:DocumentResponse/cac:Response"
_LINE = "cac:DocumentResponse/cac:LineResponse"


@dataclass(frozen=True)
class Refusal:
    """What a Message Level Response says: about which message, the code, the rules."""

    response_id: str
    message_id: str  # the refused message's Message-ID (cac:DocumentReference/cbc:ID)
    code: str
    rules: tuple[str, ...] = ()

    def summary(self) -> str:
        status = CODES.get(self.code, self.code)
        why = f": {', '.join(self.rules)}" if self.rules else ""
        return f"message {status} by the receiving gateway (MLR {self.code}){why}"


def status_reason(finding: Finding) -> str:
    """``SV`` syntax violation, ``BV`` business rule violation (fatal), ``BW`` warning."""
    if finding.severity is Severity.WARNING:
        return "BW"
    return "SV" if finding.rule in SYNTAX_RULES else "BV"


def write(
    *,
    response_id: str,
    message_id: str,
    findings: Sequence[Finding],
    sender: str,
    receiver: str,
    issued: date,
) -> bytes:
    """An MLR rejecting the message ``message_id``, one line response per finding;
    ``sender`` (the refusing recipient) and ``receiver`` are SecureMail addresses."""
    lines = "".join(_line(f) for f in findings)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ApplicationResponse xmlns="{RESPONSE_NS}"'
        f' xmlns:cac="{NS["cac"]}" xmlns:cbc="{NS["cbc"]}">'
        f"<cbc:CustomizationID>{MLR}</cbc:CustomizationID>"
        f"<cbc:ProfileID>{MLR_PROFILE}</cbc:ProfileID>"
        f"<cbc:ID>{escape(response_id)}</cbc:ID>"
        f"<cbc:IssueDate>{issued.isoformat()}</cbc:IssueDate>"
        f"{_party('SenderParty', sender)}{_party('ReceiverParty', receiver)}"
        "<cac:DocumentResponse><cac:Response><cbc:ResponseCode>RE</cbc:ResponseCode>"
        "<cbc:Description>Rejected: the document failed validation at the receiving gateway"
        "</cbc:Description></cac:Response>"
        f"<cac:DocumentReference><cbc:ID>{escape(message_id)}</cbc:ID></cac:DocumentReference>"
        f"{lines}</cac:DocumentResponse></ApplicationResponse>\n"
    ).encode()


def _line(finding: Finding) -> str:
    return (
        "<cac:LineResponse><cac:LineReference>"
        f"<cbc:LineID>{escape(finding.where or 'NA')}</cbc:LineID></cac:LineReference>"
        "<cac:Response><cbc:ResponseCode>RE</cbc:ResponseCode>"
        f"<cbc:Description>[{escape(finding.rule)}] {escape(finding.message)}</cbc:Description>"
        f"<cac:Status><cbc:StatusReasonCode>{status_reason(finding)}</cbc:StatusReasonCode>"
        "</cac:Status></cac:Response></cac:LineResponse>"
    )


def _party(element: str, address: str) -> str:
    scheme = quoteattr(EMAIL_SCHEME)
    return (
        f"<cac:{element}><cbc:EndpointID schemeID={scheme}>{escape(address)}"
        f"</cbc:EndpointID></cac:{element}>"
    )


def check(root: etree._Element) -> list[Finding]:
    findings = []
    if not text(root, "cbc:ID"):
        findings.append(Finding("SM-MLR-01", "the response shall have an identifier", "cbc:ID"))
    if not text(root, "cbc:IssueDate"):
        findings.append(
            Finding("SM-MLR-02", "the response shall have an issue date", "cbc:IssueDate")
        )
    code = text(root, f"{_RESPONSE}/cbc:ResponseCode")
    if code not in CODES:
        message = f"response code {code or 'missing'} is not one of {', '.join(CODES)}"
        findings.append(Finding("SM-MLR-03", message, f"{_RESPONSE}/cbc:ResponseCode"))
    if not text(root, "cac:DocumentResponse/cac:DocumentReference/cbc:ID"):
        message = "the response shall name the message it answers"
        findings.append(Finding("SM-MLR-04", message, "cac:DocumentResponse/cac:DocumentReference"))
    return findings


def read(root: etree._Element) -> Refusal:
    """The refusal in a checked MLR: the rule ids are the bracketed heads of the lines."""
    rules = []
    for line in root.findall(f"{_LINE}/cac:Response/cbc:Description", NS):
        head = (line.text or "").strip()
        if head.startswith("[") and "]" in head:
            rules.append(head[1 : head.index("]")])
    return Refusal(
        text(root, "cbc:ID"),
        text(root, "cac:DocumentResponse/cac:DocumentReference/cbc:ID"),
        text(root, f"{_RESPONSE}/cbc:ResponseCode"),
        tuple(dict.fromkeys(rules)),
    )
