"""The validator on the A-NZ samples: what passes, and which rule ids fail for what."""

from __future__ import annotations

import pytest

from securemail.structured.billing import CHECKED, abn_valid, gln_valid
from securemail.structured.documents import Kind
from securemail.structured.schema import Schemas
from securemail.structured.validate import CHECK_SCHEMA, validate
from tests.structured.conftest import sample

VALID = {
    "invoice-nz-valid.xml": Kind.INVOICE,
    "invoice-au-export-valid.xml": Kind.INVOICE,
    "credit-note-nz-valid.xml": Kind.CREDIT_NOTE,
    "invoice-response-rejected.xml": Kind.INVOICE_RESPONSE,
}
BROKEN = {
    "invoice-nz-wrong-totals.xml": ["PEPPOL-EN16931-R120", "BR-CO-10", "BR-CO-15"],
    "invoice-nz-missing-buyer.xml": ["BR-07", "PEPPOL-EN16931-R010", "PEPPOL-COMMON-R040"],
    "invoice-nz-schema-order.xml": ["UBL-SCHEMA"],
    "invoice-eu-customization.xml": ["document-type-unknown"],
    "not-xml.xml": ["document-not-xml"],
}


@pytest.mark.parametrize(("name", "kind"), VALID.items())
def test_valid_samples_pass_schema_and_rules(schemas: Schemas, name: str, kind: Kind) -> None:
    """Each valid sample passes the UBL 2.1 schema and every checked rule, as its kind."""
    report = validate(sample(name), schemas)
    assert report.valid, [f.line() for f in report.findings]
    assert report.document_type is not None and report.document_type.kind is kind
    assert CHECK_SCHEMA in report.checks


@pytest.mark.parametrize(("name", "rules"), BROKEN.items())
def test_broken_samples_fail_with_their_rule_ids(
    schemas: Schemas, name: str, rules: list[str]
) -> None:
    """Each broken sample is invalid with exactly the rule ids its fault breaks."""
    report = validate(sample(name), schemas)
    assert not report.valid
    assert report.rules == rules


def test_without_schemas_the_report_says_the_schema_was_not_checked() -> None:
    """Without installed schemas the schema check does not run, and the report says so."""
    report = validate(sample("invoice-nz-schema-order.xml"), None)
    assert report.valid
    assert CHECK_SCHEMA not in report.checks


def test_gst_arithmetic_is_checked_per_category() -> None:
    """A GST amount that is not the taxable amount times the rate fails BR-CO-17 and BR-CO-14."""
    data = sample("invoice-nz-valid.xml").replace(
        b'<cbc:TaxAmount currencyID="NZD">48.75</cbc:TaxAmount>\n      <cac:TaxCategory>',
        b'<cbc:TaxAmount currencyID="NZD">45.00</cbc:TaxAmount>\n      <cac:TaxCategory>',
    )
    assert validate(data, None).rules == ["BR-CO-14", "BR-CO-17"]


def test_an_entity_is_never_expanded() -> None:
    """An internal entity (billion laughs) is not expanded: the document is refused, not read."""
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Invoice>&b;</Invoice>'
    )
    report = validate(bomb, None)
    assert not report.valid
    assert report.rules == ["document-type-unknown"]


def test_identifier_checks_follow_the_published_algorithms() -> None:
    """NZBN (GLN mod 10) and ABN (mod 89) check digits, on known good and bad numbers."""
    assert gln_valid("9429041000120") and not gln_valid("9429041000121")
    assert abn_valid("51824753556") and not abn_valid("51824753557")
    assert len(set(CHECKED)) == len(CHECKED)
