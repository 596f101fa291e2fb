"""A structured document as people read it: supplier, buyer, lines, GST, totals, due date.

Pure: the document's bytes in, plain values out (the templates escape them). A document
that cannot be read or identified gives None: the reader still has the raw XML.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from securemail.structured import mlr, responses
from securemail.structured.documents import NS, DocumentError, Kind, identify, parse, text

_SUPPLIER = "cac:AccountingSupplierParty/cac:Party"
_CUSTOMER = "cac:AccountingCustomerParty/cac:Party"
MAX_LINES = 500  # shown; a longer document says how many more there are


@dataclass(frozen=True)
class Line:
    ident: str
    item: str
    quantity: str
    unit: str
    price: str
    net: str


@dataclass(frozen=True)
class TaxPart:
    category: str
    rate: str
    taxable: str
    amount: str


@dataclass(frozen=True)
class DocumentView:
    """What the webmail shows; ``answer`` only for an Invoice Response, ``lines`` and the
    amounts only for an invoice or credit note."""

    title: str
    number: str
    issued: str
    due: str
    currency: str
    supplier: str
    supplier_id: str
    buyer: str
    buyer_id: str
    buyer_reference: str
    lines: tuple[Line, ...] = ()
    more_lines: int = 0
    tax: tuple[TaxPart, ...] = ()
    net: str = ""
    gst: str = ""
    total: str = ""
    payable: str = ""
    answer: str = ""


def view(document: bytes) -> DocumentView | None:
    """The readable form of ``document``, or None if it is not one the gateway knows."""
    try:
        root = parse(document)
        kind = identify(root)
    except DocumentError:
        return None
    if kind.kind is Kind.INVOICE_RESPONSE:
        return _response(root)
    if kind.kind is Kind.MESSAGE_LEVEL_RESPONSE:
        return _message_response(root)
    return _billing(root, kind.kind)


def _party(root: etree._Element, side: str) -> tuple[str, str]:
    name = text(root, f"{side}/cac:PartyLegalEntity/cbc:RegistrationName")
    name = name or text(root, f"{side}/cac:PartyName/cbc:Name")
    endpoint = root.find(f"{side}/cbc:EndpointID", NS)
    scheme = "" if endpoint is None else endpoint.get("schemeID", "")
    label = {"0088": "NZBN", "0151": "ABN"}.get(scheme, scheme)
    ident = text(root, f"{side}/cbc:EndpointID")
    return name, f"{label} {ident}".strip() if ident else ""


def _billing(root: etree._Element, kind: Kind) -> DocumentView:
    credit = kind is Kind.CREDIT_NOTE
    rows = root.findall("cac:CreditNoteLine" if credit else "cac:InvoiceLine", NS)
    quantity = "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity"
    supplier, supplier_id = _party(root, _SUPPLIER)
    buyer, buyer_id = _party(root, _CUSTOMER)
    total = "cac:LegalMonetaryTotal"
    return DocumentView(
        title="Credit note" if credit else "Tax invoice",
        number=text(root, "cbc:ID"),
        issued=text(root, "cbc:IssueDate"),
        due=text(root, "cbc:DueDate") or text(root, "cac:PaymentMeans/cbc:PaymentDueDate"),
        currency=text(root, "cbc:DocumentCurrencyCode"),
        supplier=supplier,
        supplier_id=supplier_id,
        buyer=buyer,
        buyer_id=buyer_id,
        buyer_reference=text(root, "cbc:BuyerReference"),
        lines=tuple(_line(row, quantity) for row in rows[:MAX_LINES]),
        more_lines=max(0, len(rows) - MAX_LINES),
        tax=tuple(_tax(part) for part in root.findall("cac:TaxTotal/cac:TaxSubtotal", NS)),
        net=text(root, f"{total}/cbc:TaxExclusiveAmount"),
        gst=text(root, "cac:TaxTotal/cbc:TaxAmount"),
        total=text(root, f"{total}/cbc:TaxInclusiveAmount"),
        payable=text(root, f"{total}/cbc:PayableAmount"),
    )


def _line(row: etree._Element, quantity: str) -> Line:
    amount = row.find(quantity, NS)
    return Line(
        ident=text(row, "cbc:ID"),
        item=text(row, "cac:Item/cbc:Name"),
        quantity=text(row, quantity),
        unit="" if amount is None else amount.get("unitCode", ""),
        price=text(row, "cac:Price/cbc:PriceAmount"),
        net=text(row, "cbc:LineExtensionAmount"),
    )


def _tax(part: etree._Element) -> TaxPart:
    return TaxPart(
        category=text(part, "cac:TaxCategory/cbc:ID"),
        rate=text(part, "cac:TaxCategory/cbc:Percent"),
        taxable=text(part, "cbc:TaxableAmount"),
        amount=text(part, "cbc:TaxAmount"),
    )


def _response(root: etree._Element) -> DocumentView:
    sender = text(root, "cac:SenderParty/cac:PartyLegalEntity/cbc:RegistrationName")
    receiver = text(root, "cac:ReceiverParty/cac:PartyLegalEntity/cbc:RegistrationName")
    return DocumentView(
        title="Invoice response",
        number=text(root, "cbc:ID"),
        issued=text(root, "cbc:IssueDate"),
        due="",
        currency="",
        supplier=receiver,
        supplier_id="",
        buyer=sender,
        buyer_id="",
        buyer_reference="",
        answer=responses.read(root).summary(),
    )


def _message_response(root: etree._Element) -> DocumentView:
    return DocumentView(
        title="Message level response",
        number=text(root, "cbc:ID"),
        issued=text(root, "cbc:IssueDate"),
        due="",
        currency="",
        supplier=text(root, "cac:ReceiverParty/cbc:EndpointID"),
        supplier_id="",
        buyer=text(root, "cac:SenderParty/cbc:EndpointID"),
        buyer_id="",
        buyer_reference="",
        answer=mlr.read(root).summary(),
    )
