"""The relay's pipelined transaction (RFC 2920) with Postfix's smtpd as the receiving server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from securemail.relay import Destination, send, transaction
from securemail.replies import Reply
from tests.conftest import require_tool
from tests.relay.loopback import WAIT
from tests.support.postfix import start_postfix

TEXT = b".a line that starts with a dot\r\n.\r\nend\r\n"
BODY = b"Subject: test\r\n\r\n" + TEXT


class CountedPipelinedMail(transaction.PipelinedMail):
    """PipelinedMail, counting the transactions that use it."""

    started = 0

    async def start(self) -> dict[str, Reply] | None:
        CountedPipelinedMail.started += 1
        return await super().start()


def test_postfix_takes_a_pipelined_transaction_with_mixed_recipients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postfix offers PIPELINING: one group carries the envelope, the known mailbox gets the
    message with its dot lines intact and the unknown one Postfix's own 550 5.1.1."""
    require_tool("postfix")
    monkeypatch.setattr(transaction, "PipelinedMail", CountedPipelinedMail)
    with start_postfix(tmp_path, mailbox_dir=tmp_path / "mail", mailboxes=["bob"]) as store:
        dest = Destination(
            "127.0.0.1", store.port, "gw.example", None, require_tls=False, timeout=WAIT
        )
        results = asyncio.run(
            send(dest, "alice@x.example", ["bob@store.test", "carol@store.test"], BODY)
        )
        store.wait_for_log("status=sent")
        (message,) = store.delivered("bob")
    assert CountedPipelinedMail.started == 1
    assert results["bob@store.test"].ok
    assert (results["carol@store.test"].code, results["carol@store.test"].status) == (550, "5.1.1")
    assert message.replace(b"\n", b"\r\n").endswith(b"\r\n\r\n" + TEXT)  # Postfix adds fields
