"""The application's end: signed webhook requests to a real loopback server, and the drop folder."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from securemail.config.structured import StructuredTarget
from securemail.structured.webhook import DropFolder, Webhook, sign, signature_valid
from tests.support import webhook as application

SECRET = b"a shared secret"
ENVELOPE = {"delivery_id": "abc:invoices@council.govt.nz", "document": "PGEvPg=="}


def test_a_signature_is_valid_only_for_its_body_secret_and_time() -> None:
    """The MAC covers timestamp and body; another body, secret or an old timestamp fails."""
    now = int(time.time())
    field = sign(SECRET, now, b"body")
    assert signature_valid(SECRET, field, b"body", now)
    assert not signature_valid(SECRET, field, b"bodY", now)
    assert not signature_valid(b"other", field, b"body", now)
    assert not signature_valid(SECRET, field, b"body", now + 3600)
    assert not signature_valid(SECRET, "t=x,v1=00", b"body", now)


def _webhook(tmp_path: Path, port: int) -> Webhook:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    url = f"http://127.0.0.1:{port}/invoices"
    return Webhook(StructuredTarget("webhook", url=url, secret_file=secret, timeout=5))


def test_a_2xx_is_delivered_and_a_503_or_no_server_is_temporary(tmp_path: Path) -> None:
    """250 after the application's 204; 451 while it answers 503 or nobody listens."""

    async def scenario() -> list[int]:
        inbox = application.Inbox(SECRET)
        runner, port = await application.start(inbox)
        hook = _webhook(tmp_path, port)
        try:
            first = await hook.deliver(ENVELOPE, b"<a/>")
            inbox.down_until = time.monotonic() + 60
            second = await hook.deliver(ENVELOPE, b"<a/>")
        finally:
            await runner.cleanup()
        third = await hook.deliver(ENVELOPE, b"<a/>")
        assert third.reason == "structured-target-unavailable"
        return [first.code, second.code, third.code]

    assert asyncio.run(scenario()) == [250, 451, 451]


def test_the_drop_folder_writes_the_pair_once_per_delivery(tmp_path: Path) -> None:
    """The document and its envelope, named by the delivery id; a repeat leaves one pair."""
    drop = DropFolder(StructuredTarget("drop", path=tmp_path / "in"))
    for _ in range(2):
        assert asyncio.run(drop.deliver(ENVELOPE, b"<a/>")).code == 250
    files = sorted(p.name for p in (tmp_path / "in").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".xml")
    data = json.loads((tmp_path / "in" / files[0]).read_text())
    assert data["delivery_id"] == ENVELOPE["delivery_id"]
    assert (tmp_path / "in" / files[1]).read_bytes() == b"<a/>"
