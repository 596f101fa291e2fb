"""The application target around a real Maildir: who gets what, and what is refused."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from securemail import marking
from securemail.config.structured import StructuredTarget
from securemail.deliver import MaildirTarget
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.structured import mlr
from securemail.structured.documents import identify, parse
from securemail.structured.findings import Finding
from securemail.structured.message import Outgoing, compose
from securemail.structured.schema import Schemas
from securemail.structured.target import ApplicationTarget, Refused
from securemail.structured.webhook import DropFolder
from tests.structured.conftest import sample

VERIFIED = frozenset({SECUREMAIL_KEYWORD})
TO = "invoices@council.govt.nz"
SENDER = "ap@kowhai.example.nz"


class Refusals:
    def __init__(self) -> None:
        self.answered: list[Refused] = []

    async def answer(self, refused: Refused) -> None:
        self.answered.append(refused)


class Answers:
    def __init__(self) -> None:
        self.noted: list[tuple[str, str]] = []

    async def record(self, in_reply_to: str, summary: str) -> bool:
        self.noted.append((in_reply_to, summary))
        return True


def _message(name: str, kind_of: str = "invoice-nz-valid.xml", **extra: object) -> bytes:
    document = sample(name)
    kind = identify(parse(sample(kind_of)))
    outgoing = Outgoing(document, kind, "KOW-2026-0412", SENDER, TO, "Invoice", **extra)  # type: ignore[arg-type]
    message, _ = compose(outgoing, datetime.now(UTC))
    verdict = marking.Verdict(
        "gw.council.govt.nz", "kowhai", "Kōwhai Office Supplies", SENDER, "IN-CONFIDENCE"
    )
    return marking.mark_verified(message, verdict)


def _target(
    tmp_path: Path, schemas: Schemas, copy_to: str | None = None, refusals: Refusals | None = None
) -> tuple[ApplicationTarget, Answers]:
    settings = StructuredTarget("drop", path=tmp_path / "drop", copy_to=copy_to)
    answers = Answers()
    (tmp_path / "mail").mkdir()
    inner = MaildirTarget(tmp_path / "mail")
    target = ApplicationTarget(
        inner, settings, DropFolder(settings), schemas, answers, refusals=refusals
    )
    return target, answers


def _mail(tmp_path: Path) -> list[Path]:
    return [
        p for p in (tmp_path / "mail").rglob("*") if p.is_file() and p.parent.name in ("new", "cur")
    ]


def test_a_verified_invoice_goes_to_the_application_with_its_verification(
    tmp_path: Path, schemas: Schemas
) -> None:
    """The drop folder gets the document and who signed it; the mailbox gets nothing."""
    target, _ = _target(tmp_path, schemas)
    replies = asyncio.run(
        target.deliver(SENDER, [TO], _message("invoice-nz-valid.xml"), "a1", keywords=VERIFIED)
    )
    assert replies[TO].code == 250
    (envelope,) = [json.loads(p.read_text()) for p in (tmp_path / "drop").glob("*.json")]
    assert envelope["verified"] and envelope["signer_org"] == "kowhai"
    assert envelope["label"] == "IN-CONFIDENCE" and envelope["evidence_id"] == "a1"
    assert envelope["document_id"] == "KOW-2026-0412"
    assert not _mail(tmp_path)


def test_unverified_mail_never_reaches_the_application(tmp_path: Path, schemas: Schemas) -> None:
    """Without the gateway's verified keyword the message goes to the mailbox store as mail."""
    target, _ = _target(tmp_path, schemas)
    replies = asyncio.run(target.deliver(SENDER, [TO], _message("invoice-nz-valid.xml"), "a2"))
    assert replies[TO].code == 250
    assert not (tmp_path / "drop").exists() and len(_mail(tmp_path)) == 1


def test_an_invalid_document_on_receipt_is_refused_with_its_rule_ids(
    tmp_path: Path, schemas: Schemas
) -> None:
    """Validated again on receipt: 554 5.6.0 structured-invalid, nothing delivered, and a
    Message Level Response asked for, from the recipient to the sender, with the findings."""
    refusals = Refusals()
    target, _ = _target(tmp_path, schemas, refusals=refusals)
    message = _message("invoice-nz-wrong-totals.xml")
    reply = asyncio.run(target.deliver(SENDER, [TO], message, "a3", keywords=VERIFIED))[TO]
    assert (reply.code, reply.status, reply.reason) == (554, "5.6.0", "structured-invalid")
    assert reply.detail == "PEPPOL-EN16931-R120, BR-CO-10, BR-CO-15"
    assert not (tmp_path / "drop").exists() and not _mail(tmp_path)
    (refused,) = refusals.answered
    assert (refused.sender, refused.recipient, refused.key) == (SENDER, TO, "a3")
    assert refused.message_id.startswith("<") and refused.message_id.endswith("@kowhai.example.nz>")
    rules = [f.rule for f in refused.findings]
    assert rules == ["PEPPOL-EN16931-R120", "BR-CO-10", "BR-CO-15"]


def test_a_refused_message_level_response_gets_no_answer(tmp_path: Path, schemas: Schemas) -> None:
    """An MLR failing validation on receipt is refused, and no MLR answers it (no loop)."""
    refusals = Refusals()
    target, _ = _target(tmp_path, schemas, refusals=refusals)
    broken = mlr.write(
        response_id="",
        message_id="<x@council.govt.nz>",
        findings=[Finding("BR-01", "no customisation")],
        sender=SENDER,
        receiver=TO,
        issued=datetime.now(UTC).date(),
    )
    kind = identify(parse(broken))
    outgoing = Outgoing(broken, kind, "MLR-1", SENDER, TO, "MLR", in_reply_to="<x@council.govt.nz>")
    message, _ = compose(outgoing, datetime.now(UTC))
    verdict = marking.Verdict("gw.council.govt.nz", "kowhai", "Kōwhai", SENDER, "UNCLASSIFIED")
    message = marking.mark_verified(message, verdict)
    reply = asyncio.run(target.deliver(SENDER, [TO], message, "a6", keywords=VERIFIED))[TO]
    assert reply.code == 554 and reply.detail == "SM-MLR-01"
    assert refusals.answered == []


def test_a_message_level_response_is_noted_against_the_message_it_answers(
    tmp_path: Path, schemas: Schemas
) -> None:
    """A delivered MLR reports the refusal and its rule ids for the original's timeline."""
    target, answers = _target(tmp_path, schemas)
    document = mlr.write(
        response_id="MLR-7",
        message_id="<inv@kowhai>",
        findings=[Finding("UBL-SCHEMA", "element out of order"), Finding("BR-CO-15", "totals")],
        sender=TO,
        receiver=SENDER,
        issued=datetime.now(UTC).date(),
    )
    kind = identify(parse(document))
    outgoing = Outgoing(document, kind, "MLR-7", TO, SENDER, "MLR", False, "<inv@kowhai>")
    message, _ = compose(outgoing, datetime.now(UTC))
    verdict = marking.Verdict("gw.kowhai.example.nz", "council", "Council", TO, "UNCLASSIFIED")
    message = marking.mark_verified(message, verdict)
    reply = asyncio.run(target.deliver(TO, [SENDER], message, "a7", keywords=VERIFIED))[SENDER]
    assert reply.code == 250
    summary = "message rejected by the receiving gateway (MLR RE): UBL-SCHEMA, BR-CO-15"
    assert answers.noted == [("<inv@kowhai>", summary)]


def test_a_readable_copy_goes_to_the_configured_mailbox(tmp_path: Path, schemas: Schemas) -> None:
    """copy_to's mailbox gets the message as well as the application its document."""
    target, _ = _target(tmp_path, schemas, copy_to="accounts@council.govt.nz")
    asyncio.run(
        target.deliver(SENDER, [TO], _message("invoice-nz-valid.xml"), "a4", keywords=VERIFIED)
    )
    (copy,) = _mail(tmp_path)
    assert "accounts" in str(copy) and len(list((tmp_path / "drop").glob("*.json"))) == 1


def test_an_invoice_response_is_noted_against_the_message_it_answers(
    tmp_path: Path, schemas: Schemas
) -> None:
    """A delivered Invoice Response reports its answer for the original's timeline."""
    target, answers = _target(tmp_path, schemas)
    message = _message(
        "invoice-response-rejected.xml", "invoice-response-rejected.xml", in_reply_to="<inv@kowhai>"
    )
    assert (
        asyncio.run(target.deliver(SENDER, [TO], message, "a5", keywords=VERIFIED))[TO].code == 250
    )
    assert answers.noted == [
        ("<inv@kowhai>", "invoice KOW-2026-0412 rejected (RE): Price not as agreed")
    ]
