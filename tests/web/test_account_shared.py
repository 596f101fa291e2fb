"""The account page tells the holder what their provider signs into their mail about them."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient

from securemail.smime.assurance import IdentityCheck
from securemail.web.context import WebContext
from tests.web.conftest import ALICE, sign_in


def test_the_holder_sees_what_is_shared(client: TestClient, web: WebContext) -> None:
    """Without an identity record the page says "not verified"; with one, its level, method
    and date, as the provider's operator recorded them."""
    sign_in(client)
    page = client.get("/account").text
    assert "What your provider tells the organisations you write to" in page
    assert "your identity:\nnot verified." in page
    check = IdentityCheck("level 2", "in person, passport", date(2026, 11, 20))
    web.accounts.service.set_identity(ALICE, check)
    page = client.get("/account").text
    assert "level 2, in person, passport, on" in page and ">2026-11-20</time>" in page
