"""The business rules the gateway checks on an A-NZ invoice or credit note: an explicit subset.

The rule ids are those of EN 16931 (``BR-*``) and of the PEPPOL BIS Billing 3.0 rules as the
A-NZ extension applies them (``PEPPOL-*``); :data:`CHECKED` lists every id checked here and
docs/structured.md says the same. Nothing outside that list is claimed: the official
Schematron artefacts check far more.

Pure: an element tree in, findings out; amounts are :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation

from lxml import etree

from securemail.structured.documents import CREDIT_NOTE_NS, NS, text
from securemail.structured.findings import Finding

CHECKED = (
    "BR-01", "BR-02", "BR-03", "BR-04", "BR-05", "BR-06", "BR-07", "BR-08", "BR-09",
    "BR-10", "BR-11", "BR-12", "BR-13", "BR-14", "BR-15", "BR-16", "BR-21", "BR-22",
    "BR-24", "BR-25", "BR-26", "BR-CO-10", "BR-CO-13", "BR-CO-14", "BR-CO-15", "BR-CO-16",
    "BR-CO-17", "BR-CO-25", "BR-CL-18", "PEPPOL-EN16931-R001", "PEPPOL-EN16931-R007",
    "PEPPOL-EN16931-R010", "PEPPOL-EN16931-R020", "PEPPOL-EN16931-R051",
    "PEPPOL-EN16931-R053", "PEPPOL-EN16931-R120", "PEPPOL-COMMON-R040", "PEPPOL-COMMON-R050",
)  # fmt: skip
AUNZ_TAX_CATEGORIES = frozenset({"S", "E", "Z", "G", "O"})  # the A-NZ subset of UNCL5305
_PROFILE = re.compile(r"urn:fdc:peppol\.eu:2017:poacc:billing:[0-9]{2}:1\.0")
_CENT, _ZERO = Decimal("0.01"), Decimal(0)
_TOTALS = (
    "LineExtensionAmount", "TaxExclusiveAmount", "TaxInclusiveAmount", "AllowanceTotalAmount",
    "ChargeTotalAmount", "PrepaidAmount", "PayableRoundingAmount", "PayableAmount",
)  # fmt: skip
_SUPPLIER, _CUSTOMER = (
    "cac:AccountingSupplierParty/cac:Party",
    "cac:AccountingCustomerParty/cac:Party",
)
_TOTAL = "cac:LegalMonetaryTotal"
_NAME = "cac:PartyLegalEntity/cbc:RegistrationName"
_COUNTRY = "cac:PostalAddress/cac:Country/cbc:IdentificationCode"
Rule = Callable[[etree._Element], Iterator[Finding]]


def check(root: etree._Element) -> list[Finding]:
    """Every finding of the checked rules on the invoice or credit note ``root``."""
    return [finding for rule in RULES for finding in rule(root)]


def _amount(node: etree._Element, path: str) -> Decimal | None:
    value = text(node, path)
    try:
        return Decimal(value) if value else None
    except InvalidOperation:
        return None


def _sum(node: etree._Element, path: str) -> Decimal:
    return sum((_amount(n, ".") or Decimal(0) for n in node.findall(path, NS)), Decimal(0))


def _lines(root: etree._Element) -> list[etree._Element]:
    credit = etree.QName(root).namespace == CREDIT_NOTE_NS
    return list(root.findall("cac:CreditNoteLine" if credit else "cac:InvoiceLine", NS))


def _quantity_path(root: etree._Element) -> str:
    credit = etree.QName(root).namespace == CREDIT_NOTE_NS
    return "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity"


_REQUIRED = (
    ("BR-01", "cbc:CustomizationID", "a specification identifier (BT-24)"),
    ("PEPPOL-EN16931-R001", "cbc:ProfileID", "a business process (BT-23)"),
    ("BR-02", "cbc:ID", "an invoice number (BT-1)"),
    ("BR-03", "cbc:IssueDate", "an issue date (BT-2)"),
    ("BR-05", "cbc:DocumentCurrencyCode", "a currency code (BT-5)"),
    ("BR-06", f"{_SUPPLIER}/{_NAME}", "the seller's name (BT-27)"),
    ("BR-07", f"{_CUSTOMER}/{_NAME}", "the buyer's name (BT-44)"),
    ("BR-09", f"{_SUPPLIER}/{_COUNTRY}", "the seller's country code (BT-40)"),
    ("BR-11", f"{_CUSTOMER}/{_COUNTRY}", "the buyer's country code (BT-55)"),
    ("BR-12", f"{_TOTAL}/cbc:LineExtensionAmount", "the sum of line net amounts (BT-106)"),
    ("BR-13", f"{_TOTAL}/cbc:TaxExclusiveAmount", "the total without GST (BT-109)"),
    ("BR-14", f"{_TOTAL}/cbc:TaxInclusiveAmount", "the total with GST (BT-112)"),
    ("BR-15", f"{_TOTAL}/cbc:PayableAmount", "the amount due for payment (BT-115)"),
    ("PEPPOL-EN16931-R020", f"{_SUPPLIER}/cbc:EndpointID", "the seller's e-address (BT-34)"),
    ("PEPPOL-EN16931-R010", f"{_CUSTOMER}/cbc:EndpointID", "the buyer's e-address (BT-49)"),
)  # fmt: skip


def required_fields(root: etree._Element) -> Iterator[Finding]:
    for rule, path, what in _REQUIRED:
        if not text(root, path):
            yield Finding(rule, f"the document shall have {what}", path)
    credit = etree.QName(root).namespace == CREDIT_NOTE_NS
    code = "cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode"
    if not text(root, code):
        yield Finding("BR-04", "the document shall have a type code (BT-3)", code)
    for rule, party in (("BR-08", _SUPPLIER), ("BR-10", _CUSTOMER)):
        if root.find(f"{party}/cac:PostalAddress", NS) is None:
            yield Finding(rule, "the party shall have a postal address", party)


def profile_format(root: etree._Element) -> Iterator[Finding]:
    profile = text(root, "cbc:ProfileID")
    if profile and not _PROFILE.fullmatch(profile):
        message = "the business process shall be urn:fdc:peppol.eu:2017:poacc:billing:NN:1.0"
        yield Finding("PEPPOL-EN16931-R007", message, "cbc:ProfileID")


def lines(root: etree._Element) -> Iterator[Finding]:
    found = _lines(root)
    if not found:
        yield Finding("BR-16", "the document shall have at least one line", "/")
    quantity = _quantity_path(root)
    for n, line in enumerate(found, 1):
        where = f"line {n}"
        for rule, path, what in (
            ("BR-21", "cbc:ID", "an identifier"),
            ("BR-22", quantity, "a quantity"),
            ("BR-24", "cbc:LineExtensionAmount", "a net amount"),
            ("BR-25", "cac:Item/cbc:Name", "an item name"),
            ("BR-26", "cac:Price/cbc:PriceAmount", "an item net price"),
        ):
            if not text(line, path):
                yield Finding(rule, f"each line shall have {what}", where)
        yield from _line_amount(line, quantity, where)


def _line_amount(line: etree._Element, quantity_path: str, where: str) -> Iterator[Finding]:
    quantity, price = _amount(line, quantity_path), _amount(line, "cac:Price/cbc:PriceAmount")
    net = _amount(line, "cbc:LineExtensionAmount")
    if quantity is None or price is None or net is None:
        return
    base = _amount(line, "cac:Price/cbc:BaseQuantity") or Decimal(1)
    charges = _sum(line, "cac:AllowanceCharge[cbc:ChargeIndicator='true']/cbc:Amount")
    allowances = _sum(line, "cac:AllowanceCharge[cbc:ChargeIndicator='false']/cbc:Amount")
    expected = (quantity * price / base + charges - allowances).quantize(_CENT)
    if abs(expected - net) > _CENT:
        message = f"the line net amount {net} shall be quantity x price {expected}"
        yield Finding("PEPPOL-EN16931-R120", message, where)


def totals(root: etree._Element) -> Iterator[Finding]:
    """BR-CO-10, 13, 15 and 16: the document totals add up."""
    total = root.find(_TOTAL, NS)
    if total is None:
        return
    amounts = {n: _amount(total, f"cbc:{n}") for n in _TOTALS}
    net, exclusive = amounts["LineExtensionAmount"], amounts["TaxExclusiveAmount"]
    inclusive, payable = amounts["TaxInclusiveAmount"], amounts["PayableAmount"]
    line_sum = sum((_amount(n, "cbc:LineExtensionAmount") or 0 for n in _lines(root)), _ZERO)
    if net is not None and net != line_sum:
        yield Finding("BR-CO-10", f"the sum of line net amounts {net} shall be {line_sum}", _TOTAL)
    adjust = (amounts["ChargeTotalAmount"] or 0) - (amounts["AllowanceTotalAmount"] or 0)
    if net is not None and exclusive is not None and exclusive != net + adjust:
        message = f"the total without GST {exclusive} shall be {net + adjust}"
        yield Finding("BR-CO-13", message, _TOTAL)
    tax = _document_tax(root)
    if exclusive is not None and inclusive is not None and inclusive != exclusive + tax:
        message = f"the total with GST {inclusive} shall be {exclusive + tax}"
        yield Finding("BR-CO-15", message, _TOTAL)
    less = (amounts["PrepaidAmount"] or 0) - (amounts["PayableRoundingAmount"] or 0)
    if inclusive is not None and payable is not None and payable != inclusive - less:
        message = f"the amount due {payable} shall be {inclusive - less}"
        yield Finding("BR-CO-16", message, _TOTAL)


def due(root: etree._Element) -> Iterator[Finding]:
    """BR-CO-25: an invoice with an amount due says when (a credit note need not)."""
    if etree.QName(root).namespace == CREDIT_NOTE_NS:
        return
    payable = _amount(root, f"{_TOTAL}/cbc:PayableAmount")
    when = text(root, "cbc:DueDate") or text(root, "cac:PaymentMeans/cbc:PaymentDueDate")
    terms = root.find("cac:PaymentTerms/cbc:Note", NS) is not None
    if payable is not None and payable > 0 and not (when or terms):
        message = "a positive amount due shall have a due date (BT-9) or payment terms (BT-20)"
        yield Finding("BR-CO-25", message, "/")


def _document_tax(root: etree._Element) -> Decimal:
    currency = text(root, "cbc:DocumentCurrencyCode")
    for node in root.findall("cac:TaxTotal/cbc:TaxAmount", NS):
        if node.get("currencyID") == currency:
            return _amount(node, ".") or Decimal(0)
    return Decimal(0)


def tax(root: etree._Element) -> Iterator[Finding]:
    with_subtotals = [
        t for t in root.findall("cac:TaxTotal", NS) if t.find("cac:TaxSubtotal", NS) is not None
    ]
    if len(with_subtotals) != 1:
        message = f"exactly one tax total with subtotals, not {len(with_subtotals)}"
        yield Finding("PEPPOL-EN16931-R053", message, "cac:TaxTotal")
        return
    total = with_subtotals[0]
    amount = _amount(total, "cbc:TaxAmount") or Decimal(0)
    parts = _sum(total, "cac:TaxSubtotal/cbc:TaxAmount")
    if amount != parts:
        yield Finding(
            "BR-CO-14",
            f"the GST total {amount} shall be the sum {parts} of its parts",
            "cac:TaxTotal",
        )
    for n, subtotal in enumerate(total.findall("cac:TaxSubtotal", NS), 1):
        yield from _subtotal(subtotal, f"tax subtotal {n}")


def _subtotal(subtotal: etree._Element, where: str) -> Iterator[Finding]:
    category = text(subtotal, "cac:TaxCategory/cbc:ID")
    if category not in AUNZ_TAX_CATEGORIES:
        allowed = ", ".join(sorted(AUNZ_TAX_CATEGORIES))
        yield Finding(
            "BR-CL-18", f"tax category {category or 'missing'} is not one of {allowed}", where
        )
    base, amount = _amount(subtotal, "cbc:TaxableAmount"), _amount(subtotal, "cbc:TaxAmount")
    rate = _amount(subtotal, "cac:TaxCategory/cbc:Percent")
    if base is None or amount is None or rate is None:
        return
    expected = (base * rate / 100).quantize(_CENT)
    if abs(expected - amount) > _CENT:
        yield Finding(
            "BR-CO-17", f"the GST amount {amount} shall be {base} x {rate}% = {expected}", where
        )


def currencies(root: etree._Element) -> Iterator[Finding]:
    currency = text(root, "cbc:DocumentCurrencyCode")
    tax_currency = text(root, "cbc:TaxCurrencyCode")
    for node in root.iter():
        found = node.get("currencyID")
        if found is None or found == currency:
            continue
        in_tax_total = etree.QName(node).localname == "TaxAmount" and found == tax_currency
        if not in_tax_total:
            message = f"amount in {found}, the document's currency is {currency}"
            yield Finding("PEPPOL-EN16931-R051", message, etree.QName(node).localname)


def identifiers(root: etree._Element) -> Iterator[Finding]:
    for node in root.iter(
        f"{{{NS['cbc']}}}EndpointID", f"{{{NS['cbc']}}}CompanyID", f"{{{NS['cbc']}}}ID"
    ):
        scheme, value = node.get("schemeID"), (node.text or "").strip()
        if scheme == "0088" and not gln_valid(value):
            yield Finding(
                "PEPPOL-COMMON-R040", f"{value} is not a valid GLN (NZBN)", "schemeID 0088"
            )
        if scheme == "0151" and not abn_valid(value):
            yield Finding("PEPPOL-COMMON-R050", f"{value} is not a valid ABN", "schemeID 0151")


def gln_valid(value: str) -> bool:
    """GS1 mod-10 check digit of a 13-digit GLN (a NZBN is one)."""
    if not re.fullmatch(r"[0-9]{13}", value):
        return False
    digits = [int(c) for c in value]
    total = sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits[:12]))
    return (10 - total % 10) % 10 == digits[12]


def abn_valid(value: str) -> bool:
    """The ATO's ABN check: subtract 1 from the first digit, weight, sum mod 89 == 0."""
    if not re.fullmatch(r"[0-9]{11}", value):
        return False
    weights = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)
    digits = [int(c) for c in value]
    digits[0] -= 1
    return sum(d * w for d, w in zip(digits, weights, strict=True)) % 89 == 0


RULES: tuple[Rule, ...] = (
    required_fields,
    profile_format,
    lines,
    totals,
    tax,
    currencies,
    identifiers,
)
