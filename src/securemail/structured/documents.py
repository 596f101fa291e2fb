"""Structured documents: which kind a UBL document is, read safely from untrusted bytes.

A document is known by its root element (namespace and name) and its customisation and
profile identifiers (UBL ``cbc:CustomizationID`` and ``cbc:ProfileID``). Together they give
the PEPPOL document type identifier, ``<root namespace>::<root name>##<customisation>::2.1``,
which is what the gateway names in the signed message (profile requirement SM-STRUCT-1).

Security: the bytes are untrusted. The parser resolves no entities, loads no DTD, reaches
no network and refuses huge trees; anything it cannot read is a :class:`DocumentError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from securemail.errors import SecureMailError

MAX_DOCUMENT = 10 * 2**20  # octets: far above any invoice, far below the message limit

CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
RESPONSE_NS = "urn:oasis:names:specification:ubl:schema:xsd:ApplicationResponse-2"
NS = {"cbc": CBC, "cac": CAC}

AUNZ_BILLING = (
    "urn:cen.eu:en16931:2017#conformant#urn:fdc:peppol.eu:2017:poacc:billing:international:aunz:3.0"
)
BILLING_PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
INVOICE_RESPONSE = "urn:fdc:peppol.eu:poacc:trns:invoice_response:3"
INVOICE_RESPONSE_PROFILE = "urn:fdc:peppol.eu:poacc:bis:invoice_response:3"
MLR = "urn:fdc:peppol.eu:poacc:trns:mlr:3"  # PEPPOL Message Level Response 3.0
MLR_PROFILE = "urn:fdc:peppol.eu:poacc:bis:mlr:3"


class DocumentReason(StrEnum):
    """Why a structured document was not even read (before any rule)."""

    NOT_XML = "document-not-xml"
    TOO_BIG = "document-too-big"
    UNKNOWN_TYPE = "document-type-unknown"


class DocumentError(SecureMailError[DocumentReason]):
    """A document that is not well-formed XML, too big, or of a type the gateway does not know."""


class Kind(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit-note"
    INVOICE_RESPONSE = "invoice-response"
    MESSAGE_LEVEL_RESPONSE = "message-level-response"


# root -> {CustomizationID: kind}; an ApplicationResponse is told apart by its customisation
_ROOTS = {
    (INVOICE_NS, "Invoice"): {AUNZ_BILLING: Kind.INVOICE},
    (CREDIT_NOTE_NS, "CreditNote"): {AUNZ_BILLING: Kind.CREDIT_NOTE},
    (RESPONSE_NS, "ApplicationResponse"): {
        INVOICE_RESPONSE: Kind.INVOICE_RESPONSE,
        MLR: Kind.MESSAGE_LEVEL_RESPONSE,
    },
}


@dataclass(frozen=True)
class DocumentType:
    """What a document is: its kind, root, and the identifiers it declares."""

    kind: Kind
    namespace: str
    root: str
    customization: str
    profile: str

    @property
    def identifier(self) -> str:
        """The PEPPOL document type identifier (busdox-docid-qns form)."""
        return f"{self.namespace}::{self.root}##{self.customization}::2.1"

    @property
    def billing(self) -> bool:
        return self.kind in (Kind.INVOICE, Kind.CREDIT_NOTE)


def parse(data: bytes) -> etree._Element:
    """The document's root element; DocumentError if it is not safe, well-formed XML."""
    if len(data) > MAX_DOCUMENT:
        raise DocumentError(DocumentReason.TOO_BIG, f"{len(data)} octets, at most {MAX_DOCUMENT}")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise DocumentError(DocumentReason.NOT_XML, str(error)[:200]) from None
    if root is None:
        raise DocumentError(DocumentReason.NOT_XML, "no root element")
    return root


def identify(root: etree._Element) -> DocumentType:
    """The type of the parsed document; DocumentError if it is not one the gateway carries."""
    name = etree.QName(root)
    known = _ROOTS.get((name.namespace or "", name.localname))
    if known is None:
        raise DocumentError(
            DocumentReason.UNKNOWN_TYPE,
            f"root {name.localname} in {name.namespace or 'no namespace'} is not a UBL "
            "Invoice, CreditNote or ApplicationResponse",
        )
    customization = text(root, "cbc:CustomizationID")
    kind = known.get(customization)
    if kind is None:
        raise DocumentError(
            DocumentReason.UNKNOWN_TYPE,
            f"{name.localname} with CustomizationID {customization or 'missing'}; "
            f"this gateway carries {' or '.join(known)}",
        )
    return DocumentType(
        kind, name.namespace or "", name.localname, customization, text(root, "cbc:ProfileID")
    )


def text(node: etree._Element, path: str) -> str:
    """The stripped text of the first element at ``path`` under ``node``, or ""."""
    found = node.find(path, NS)
    return "" if found is None or found.text is None else found.text.strip()
