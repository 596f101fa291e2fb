"""The gateway's Message Level Response: PEPPOL MLR 3.0 ids, UBL 2.1 schema-valid, read back."""

from __future__ import annotations

from datetime import date

from securemail.structured import mlr
from securemail.structured.documents import (
    MLR,
    MLR_PROFILE,
    NS,
    RESPONSE_NS,
    Kind,
    identify,
    parse,
    text,
)
from securemail.structured.findings import Finding, Severity
from securemail.structured.schema import Schemas
from securemail.structured.validate import CHECK_MLR, CHECK_SCHEMA, validate
from securemail.structured.view import view

FINDINGS = (
    Finding("UBL-SCHEMA", "cbc:IssueDate is not expected here", "/Invoice/cbc:IssueDate"),
    Finding("BR-CO-15", "total with GST is not net + GST", "cac:LegalMonetaryTotal"),
    Finding("PEPPOL-COMMON-R040", "bad NZBN check digit", "", Severity.WARNING),
)


def _written() -> bytes:
    return mlr.write(
        response_id="MLR-1",
        message_id="<abc@agency.govt.nz>",
        findings=FINDINGS,
        sender="accounts@harbourbuilders.co.nz",
        receiver="aroha.ngata@agency.govt.nz",
        issued=date(2026, 12, 7),
    )


def test_the_mlr_carries_peppols_identifiers_and_passes_the_ubl_schema(schemas: Schemas) -> None:
    """MLR 3.0 customisation and profile, RE, the refused Message-ID; schema and checks pass."""
    document = _written()
    kind = identify(parse(document))
    assert kind.kind is Kind.MESSAGE_LEVEL_RESPONSE
    assert (kind.customization, kind.profile) == (MLR, MLR_PROFILE)
    assert kind.identifier == f"{RESPONSE_NS}::ApplicationResponse##{MLR}::2.1"
    report = validate(document, schemas)
    assert report.valid, report.findings
    assert report.checks == (CHECK_SCHEMA, CHECK_MLR)
    root = parse(document)
    assert text(root, "cac:DocumentResponse/cac:Response/cbc:ResponseCode") == "RE"
    assert text(root, "cac:DocumentResponse/cac:DocumentReference/cbc:ID") == "<abc@agency.govt.nz>"
    sender = root.find("cac:SenderParty/cbc:EndpointID", NS)
    assert sender is not None and sender.get("schemeID") == "EM"


def test_each_rule_is_a_line_response_with_its_place_and_issue_type() -> None:
    """One LineResponse per finding: LineID the place (NA if none), [rule] message, SV/BV/BW."""
    root = parse(_written())
    lines = root.findall("cac:DocumentResponse/cac:LineResponse", NS)
    got = [
        (
            text(line, "cac:LineReference/cbc:LineID"),
            text(line, "cac:Response/cbc:Description").split("]")[0] + "]",
            text(line, "cac:Response/cac:Status/cbc:StatusReasonCode"),
        )
        for line in lines
    ]
    assert got == [
        ("/Invoice/cbc:IssueDate", "[UBL-SCHEMA]", "SV"),
        ("cac:LegalMonetaryTotal", "[BR-CO-15]", "BV"),
        ("NA", "[PEPPOL-COMMON-R040]", "BW"),
    ]


def test_read_gives_the_refused_message_and_its_rules() -> None:
    """read() of a written MLR: the ids round-trip, and the summary names the rules."""
    refusal = mlr.read(parse(_written()))
    assert refusal == mlr.Refusal(
        "MLR-1", "<abc@agency.govt.nz>", "RE", ("UBL-SCHEMA", "BR-CO-15", "PEPPOL-COMMON-R040")
    )
    assert refusal.summary().startswith("message rejected by the receiving gateway (MLR RE): ")


def test_an_mlr_without_its_reference_fails_the_gateways_checks() -> None:
    """SM-MLR-01 and SM-MLR-04 when the id and the referenced message are empty."""
    document = mlr.write(
        response_id="",
        message_id="",
        findings=(),
        sender="a@b.nz",
        receiver="c@d.nz",
        issued=date(2026, 12, 7),
    )
    report = validate(document, None)
    assert report.rules == ["SM-MLR-01", "SM-MLR-04"]


def test_the_webmail_shows_an_mlr_as_a_refusal_with_its_rules() -> None:
    """view() of an MLR: its title, id and the refusal's summary naming the rules."""
    shown = view(_written())
    assert shown is not None and shown.title == "Message level response"
    assert shown.number == "MLR-1"
    assert shown.answer.endswith("(MLR RE): UBL-SCHEMA, BR-CO-15, PEPPOL-COMMON-R040")
