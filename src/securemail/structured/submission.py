"""Structured documents entering the outbound queue: checked before anything is queued.

A submitted message whose one part is an XML document (SMTP from a business application,
or the JSON API) is validated with :func:`securemail.structured.validate.validate`; an
invalid one is refused with its rule ids (``554 5.6.0``, reason ``structured-invalid``),
a valid one gets the gateway's own document type and id fields and a receipt request
(:func:`securemail.structured.message.stamp`) before it is queued and signed.

Pure: bytes in, bytes or a refusal out.
"""

from __future__ import annotations

from securemail.replies import Reply
from securemail.structured.documents import parse, text
from securemail.structured.message import declares, find, may_carry, stamp
from securemail.structured.schema import Schemas
from securemail.structured.validate import Report, validate

INVALID = "structured-invalid"


def refusal(report: Report) -> Reply:
    rules = ", ".join(report.rules)
    return Reply(554, "5.6.0", f"Document refused: {rules}", INVALID, rules)


def admit_document(body: bytes, sender: str, schemas: Schemas | None) -> bytes | Reply:
    """``body`` ready to queue (stamped if it carries a document), or the refusal."""
    if not may_carry(body):
        return body
    found = find(body)
    if found is None:
        if declares(body):
            detail = "the message names a document type but holds no single XML document"
            return Reply(554, "5.6.0", "Document refused: no document", INVALID, detail)
        return body
    report = validate(found.document, schemas)
    if not report.valid or report.document_type is None:
        return refusal(report)
    document_id = text(parse(found.document), "cbc:ID")
    return stamp(body, report.document_type, document_id, sender)
