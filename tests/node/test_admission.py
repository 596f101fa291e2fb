"""Admission of outbound mail: only mail that may carry a structured document goes to a
thread to be validated; the rest is queued straight from the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from securemail.node import admission
from securemail.node.admission import Admission, AdmissionContext
from securemail.receive import Received
from securemail.receive.door import SourceQuota
from securemail.replies import Reply
from securemail.structured.schema import Schemas
from tests.conftest import NOW
from tests.node.conftest import Federation
from tests.support.roles import open_queue

PLAIN = b"From: aroha.ngata@agency.govt.nz\r\nSubject: x\r\n\r\nplain text\r\n"
XML = b"From: aroha.ngata@agency.govt.nz\r\nContent-Type: application/xml\r\n\r\n<Invoice/>\r\n"


def _relayed(body: bytes) -> Received:
    recipients = ("hemi.walker@securemail.provider.nz",)
    return Received(
        "relay", "127.0.0.1", "mta", "aroha.ngata@agency.govt.nz", recipients, body, False,
        None, None,
    )  # fmt: skip


def test_only_mail_that_may_carry_a_document_is_validated_in_a_thread(
    federation: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain mail is queued (250) without the document check being called at all (no thread
    hop); XML mail goes to the check, on a thread other than the loop's, and gets its reply."""
    checked: list[int] = []

    def admit_document(body: bytes, sender: str, schemas: Schemas | None) -> bytes | Reply:
        checked.append(threading.get_ident())
        return Reply(554, "5.6.0", "Document refused", "document-invalid", "test")

    monkeypatch.setattr(admission, "admit_document", admit_document)

    async def scenario() -> tuple[int, int]:
        async with open_queue(tmp_path / "queue.db") as queue:
            context = AdmissionContext(
                federation.config("agency"), lambda: None, queue.access, lambda: NOW, SourceQuota(2)
            )
            door = Admission(context)
            plain = await door.admit_outbound(_relayed(PLAIN))
            assert checked == []
            xml = await door.admit_outbound(_relayed(XML))
            return plain.code, xml.code

    assert asyncio.run(scenario()) == (250, 554)
    assert checked != [threading.get_ident()] and len(checked) == 1
