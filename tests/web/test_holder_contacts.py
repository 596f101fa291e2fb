"""The account page lists the holder's confirmed verifications, and Withdraw sends the answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from securemail.contacts.model import read_answer
from securemail.receive import Received
from securemail.replies import Reply
from securemail.web import maildir_view as maildir
from securemail.web.app import make_app
from securemail.web.context import WebContext
from tests.web.conftest import ALICE, ORIGIN, csrf_of, sign_in

IDENT = "Z" * 22
AGENCY = "securemail-contacts@agency.govt.nz"


def _mail(sender: str, to: str, subject: str, date: str) -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
    return (head + "Message-ID: <x@example>\r\n\r\nbody\r\n").encode()


@pytest.fixture
def holder(web: WebContext, tmp_path: Path) -> Iterator[tuple[TestClient, list[Received]]]:
    """Alice's Maildir holds an agency's request and her confirmation; what the webmail
    submits is admitted (and kept for the test to read)."""
    root = tmp_path / "maildir" / ALICE
    maildir.prepare(root)
    request = f"Please confirm your address for benefit payments [{IDENT}]"
    maildir.store(
        maildir.ensure_folder(root, maildir.INBOX),
        _mail(AGENCY, ALICE, request, "Tue, 01 Dec 2026 09:00:00 +0000"),
    )
    confirm = _mail(ALICE, AGENCY, f"Confirm {IDENT}", "Tue, 01 Dec 2026 10:00:00 +0000")
    maildir.store(maildir.ensure_folder(root, maildir.SENT), confirm)
    admitted: list[Received] = []

    async def admit(received: Received) -> Reply:
        admitted.append(received)
        return Reply(250, "2.0.0", "queued")

    mailbox = dataclasses.replace(web, maildir_for=lambda primary: root, admit=admit)
    with TestClient(make_app(mailbox), base_url=ORIGIN) as client:
        sign_in(client)
        yield client, admitted


def _withdraw(client: TestClient, ident: str) -> object:
    page = client.get("/account").text
    return client.post(
        "/account/verifications/withdraw",
        data={"csrf": csrf_of(page), "ident": ident},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )


def test_the_account_page_lists_what_was_confirmed(
    holder: tuple[TestClient, list[Received]],
) -> None:
    """The confirmed verification shows its organisation, purpose and a Withdraw button."""
    client, _ = holder
    page = client.get("/account").text
    assert "agency.govt.nz" in page and "benefit payments" in page
    assert f'name="ident" value="{IDENT}"' in page and "Withdraw from agency.govt.nz" in page


def test_withdraw_sends_the_mail_answer_and_the_list_empties(
    holder: tuple[TestClient, list[Received]],
) -> None:
    """Withdraw submits from Alice to the agency's contacts address a message whose Subject
    the agency reads as a withdrawal of this id; with its copy in Sent the list is empty."""
    client, admitted = holder
    answered = _withdraw(client, IDENT)
    assert answered.headers["location"].endswith("withdrawn=sent#verifications")  # type: ignore[attr-defined]
    [sent] = admitted
    assert (sent.mail_from, sent.recipients, sent.auth_user) == (ALICE, (AGENCY,), ALICE)
    subject = next(line for line in sent.body.decode().splitlines() if line.startswith("Subject:"))
    assert read_answer(subject) == ("withdraw", IDENT)
    page = client.get("/account?withdrawn=sent").text
    assert "Your withdrawal is sent" in page and f'value="{IDENT}"' not in page


def test_withdraw_refuses_an_id_not_confirmed_and_a_forged_form(
    holder: tuple[TestClient, list[Received]],
) -> None:
    """An id the holder did not confirm sends nothing; a form without CSRF is refused."""
    client, admitted = holder
    other = _withdraw(client, "Q" * 22)
    assert other.headers["location"].endswith("withdrawn=unknown#verifications")  # type: ignore[attr-defined]
    forged = client.post(
        "/account/verifications/withdraw",
        data={"ident": IDENT},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert forged.status_code in (400, 403) and admitted == []
