"""PEPPOL Invoice Response (UBL ApplicationResponse): written, read and checked.

A receiving application answers an invoice with one: accepted (``AP``), rejected (``RE``,
with reasons), or a step between (UNCL 4343 subset: ``AB``, ``IP``, ``UQ``, ``CA``, ``PD``).
The gateway checks only what it needs to carry and match it; the ids of those checks are
the gateway's own (``SM-IR-*``, listed in docs/structured.md), not PEPPOL's.

Pure: values in, bytes or findings out; the time is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape

from lxml import etree

from securemail.structured.documents import (
    INVOICE_RESPONSE,
    INVOICE_RESPONSE_PROFILE,
    NS,
    RESPONSE_NS,
    text,
)
from securemail.structured.findings import Finding

STATUS_CODES = {
    "AB": "acknowledged",
    "IP": "in process",
    "UQ": "under query",
    "CA": "conditionally accepted",
    "RE": "rejected",
    "AP": "accepted",
    "PD": "paid",
}
CHECKED = ("SM-IR-01", "SM-IR-02", "SM-IR-03", "SM-IR-04")
_RESPONSE = "cac:DocumentResponse/cac:Response"


@dataclass(frozen=True)
class Answer:
    """What an Invoice Response says: about which invoice, the status and the reasons."""

    response_id: str
    invoice_id: str
    code: str
    reasons: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return STATUS_CODES.get(self.code, self.code)

    def summary(self) -> str:
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"invoice {self.invoice_id} {self.status} ({self.code}){why}"


def check(root: etree._Element) -> list[Finding]:
    findings = []
    if not text(root, "cbc:ID"):
        findings.append(Finding("SM-IR-01", "the response shall have an identifier", "cbc:ID"))
    if not text(root, "cbc:IssueDate"):
        findings.append(
            Finding("SM-IR-02", "the response shall have an issue date", "cbc:IssueDate")
        )
    code = text(root, f"{_RESPONSE}/cbc:ResponseCode")
    if code not in STATUS_CODES:
        allowed = ", ".join(STATUS_CODES)
        message = f"response code {code or 'missing'} is not one of {allowed}"
        findings.append(Finding("SM-IR-03", message, f"{_RESPONSE}/cbc:ResponseCode"))
    if not text(root, "cac:DocumentResponse/cac:DocumentReference/cbc:ID"):
        message = "the response shall name the invoice it answers"
        findings.append(Finding("SM-IR-04", message, "cac:DocumentResponse/cac:DocumentReference"))
    return findings


def read(root: etree._Element) -> Answer:
    """The answer in a checked Invoice Response."""
    reasons = tuple(
        (n.text or "").strip()
        for n in root.findall(f"{_RESPONSE}/cac:Status/cbc:StatusReason", NS)
        if (n.text or "").strip()
    )
    return Answer(
        text(root, "cbc:ID"),
        text(root, "cac:DocumentResponse/cac:DocumentReference/cbc:ID"),
        text(root, f"{_RESPONSE}/cbc:ResponseCode"),
        reasons,
    )


@dataclass(frozen=True)
class Party:
    """A party of a response: its electronic address (scheme, id) and its name."""

    scheme: str
    endpoint: str
    name: str


def write(answer: Answer, *, sender: Party, receiver: Party, issued: date) -> bytes:
    """An Invoice Response document for ``answer``."""
    status = "".join(
        '<cac:Status><cbc:StatusReasonCode listID="OPStatusReason">OTH</cbc:StatusReasonCode>'
        f"<cbc:StatusReason>{escape(r)}</cbc:StatusReason></cac:Status>"
        for r in answer.reasons
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ApplicationResponse xmlns="{RESPONSE_NS}"'
        f' xmlns:cac="{NS["cac"]}" xmlns:cbc="{NS["cbc"]}">'
        f"<cbc:CustomizationID>{INVOICE_RESPONSE}</cbc:CustomizationID>"
        f"<cbc:ProfileID>{INVOICE_RESPONSE_PROFILE}</cbc:ProfileID>"
        f"<cbc:ID>{escape(answer.response_id)}</cbc:ID>"
        f"<cbc:IssueDate>{issued.isoformat()}</cbc:IssueDate>"
        f"{_party('SenderParty', sender)}{_party('ReceiverParty', receiver)}"
        "<cac:DocumentResponse><cac:Response>"
        f'<cbc:ResponseCode listID="UNCL4343OpSubset">{escape(answer.code)}</cbc:ResponseCode>'
        f"{status}</cac:Response>"
        f"<cac:DocumentReference><cbc:ID>{escape(answer.invoice_id)}</cbc:ID>"
        '<cbc:DocumentTypeCode listID="UNCL1001">380</cbc:DocumentTypeCode>'
        "</cac:DocumentReference></cac:DocumentResponse></ApplicationResponse>\n"
    ).encode()


def _party(element: str, party: Party) -> str:
    return (
        f'<cac:{element}><cbc:EndpointID schemeID="{escape(party.scheme)}">'
        f"{escape(party.endpoint)}</cbc:EndpointID>"
        f"<cac:PartyLegalEntity><cbc:RegistrationName>{escape(party.name)}"
        f"</cbc:RegistrationName></cac:PartyLegalEntity></cac:{element}>"
    )


def parties(invoice: etree._Element) -> tuple[Party, Party]:
    """(supplier, buyer) of an invoice, as a response to it names them."""
    out = []
    for side in ("cac:AccountingSupplierParty/cac:Party", "cac:AccountingCustomerParty/cac:Party"):
        endpoint = invoice.find(f"{side}/cbc:EndpointID", NS)
        scheme = "" if endpoint is None else endpoint.get("schemeID", "")
        name = text(invoice, f"{side}/cac:PartyLegalEntity/cbc:RegistrationName")
        out.append(Party(scheme, text(invoice, f"{side}/cbc:EndpointID"), name))
    return out[0], out[1]


def reasons_of(findings: Sequence[Finding]) -> tuple[str, ...]:
    """Rejection reasons for a document that failed validation: one per failed rule."""
    return tuple(f"{f.rule}: {f.message}" for f in findings)
