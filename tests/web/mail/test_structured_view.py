"""An e-invoice in the webmail: shown readably (supplier, buyer, lines, GST, totals, due
date) beside the raw XML download; an Invoice Response shows its answer."""

from __future__ import annotations

from datetime import UTC, datetime

from securemail.marking import mark_verified
from securemail.structured.documents import identify, parse, text
from securemail.structured.message import Outgoing, compose
from tests.structured.conftest import sample
from tests.web.mail.conftest import Webmail
from tests.web.mail.test_mailbox import VERDICT, deliver


def _delivered(webmail: Webmail, name: str, key: str) -> str:
    document = sample(name)
    kind = identify(parse(document))
    number = text(parse(document), "cbc:ID")
    outgoing = Outgoing(
        document, kind, number, "bob@ministry.govt.nz", "alice@agency.govt.nz", "Doc"
    )
    message, _ = compose(outgoing, datetime(2026, 12, 1, tzinfo=UTC))
    stored = deliver(webmail.root, mark_verified(message, VERDICT), key, verified=True)
    return str(webmail.client.get("/mail/read", params={"folder": "INBOX", "key": stored}).text)


def test_an_invoice_is_shown_readably_beside_its_xml(webmail: Webmail) -> None:
    """Supplier, buyer, each line, the GST part, the totals and the due date; the XML offered."""
    page = _delivered(webmail, "invoice-nz-valid.xml", "d1")
    assert "Tax invoice KOW-2026-0412" in page
    assert "Kōwhai Office Supplies Limited" in page and "NZBN 9429041000120" in page
    assert "Te Whanganui-a-Tara District Council" in page
    assert "A4 copy paper, 80 gsm, box of 5 reams" in page and "10 BX" in page
    assert "GST S 15% on 325.00" in page and "48.75" in page
    assert "NZD 373.75" in page and "2026-12-20" in page
    assert "KOW-2026-0412.xml" in page and "/mail/attachment?" in page


def test_a_credit_note_and_an_answer_are_named_as_such(webmail: Webmail) -> None:
    """A credit note is titled so; an Invoice Response shows its status and reasons."""
    assert "Credit note KOW-2026-C031" in _delivered(webmail, "credit-note-nz-valid.xml", "d2")
    page = _delivered(webmail, "invoice-response-rejected.xml", "d3")
    assert "invoice KOW-2026-0412 rejected (RE): Price not as agreed" in page
