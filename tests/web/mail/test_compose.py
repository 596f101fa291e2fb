"""Compose: strict recipients and Subject (no header injection), the label header the gateway
reads, a receipt request, per-recipient reach, admit as submission, and the Sent copy."""

from __future__ import annotations

import email
import email.policy
import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from securemail.deliver.seal import Origin
from securemail.policy.labels import classify
from securemail.policy.model import OrgPolicy
from securemail.web.compose import ComposeError, ComposeReason, Draft, build
from tests.conftest import NOW, SEAL
from tests.web.mail.conftest import Webmail, account

ALICE = "alice@agency.govt.nz"


def draft(**changes: object) -> Draft:
    fields: dict[str, object] = {
        "sender": ALICE,
        "to": ("bob@ministry.govt.nz",),
        "cc": (),
        "subject": "Budget",
        "body": "Hello",
    }
    fields.update(changes)
    return Draft(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"to": ("bob@ministry.govt.nz\r\nBcc: eve@evil.example",)},
        {"cc": ("bob@ministry.govt.nz\nX-Evil: 1",)},
        {"subject": "Hi\r\nBcc: eve@evil.example"},
    ],
)
def test_line_breaks_in_addresses_or_subject_are_refused(changes: dict[str, object]) -> None:
    """A CR or LF in a recipient or the Subject is refused, never stripped and sent."""
    with pytest.raises(ComposeError) as refused:
        build(draft(**changes), account=account(), now=NOW)
    assert refused.value.reason is ComposeReason.HEADER_INJECTION


def test_one_address_per_entry() -> None:
    """An entry with two addresses (a list) is refused."""
    with pytest.raises(ComposeError) as refused:
        build(draft(to=("bob@ministry.govt.nz, eve@evil.example",)), account=account(), now=NOW)
    assert refused.value.reason is ComposeReason.BAD_ADDRESS


def test_from_must_be_one_of_the_accounts_addresses() -> None:
    """From: another address than the account's is refused; an alias is accepted."""
    with pytest.raises(ComposeError):
        build(draft(sender="boss@agency.govt.nz"), account=account(), now=NOW)
    assert (
        b"From: Alice Example <a.example@agency.govt.nz>"
        in build(draft(sender="a.example@agency.govt.nz"), account=account(), now=NOW).message
    )


def test_label_is_written_as_the_gateway_classifies_it() -> None:
    """The label becomes X-Protective-Marking and the Subject form; classify reads it back."""
    composed = build(
        draft(classification="IN-CONFIDENCE", privacy="PERSONAL", receipt=True),
        account=account(),
        now=NOW,
    )
    parsed = email.message_from_bytes(composed.message, policy=email.policy.default)
    assert parsed["X-Protective-Marking"] == (
        "VER=2012.3, NS=gov.nz, SEC=IN-CONFIDENCE, PRIVACY=PERSONAL, ORIGIN=alice@agency.govt.nz"
    )
    assert parsed["Subject"] == "Budget [SEC=IN-CONFIDENCE, PRIVACY=PERSONAL]"
    assert parsed["Disposition-Notification-To"] == ALICE
    read = classify(composed.message, OrgPolicy(), sender=ALICE)
    assert read.label == composed.label and read.conflict is None


def test_a_subject_claiming_another_marking_is_refused() -> None:
    """A Subject saying RESTRICTED under an IN-CONFIDENCE choice is refused (never sent higher)."""
    with pytest.raises(ComposeError) as refused:
        build(
            draft(subject="x [SEC=RESTRICTED]", classification="IN-CONFIDENCE"),
            account=account(),
            now=NOW,
        )
    assert refused.value.reason is ComposeReason.LABEL_CONFLICT


def test_send_admits_as_submission_and_stores_a_sent_copy(webmail: Webmail) -> None:
    """Sending calls admit with listener submission and auth_user, then files the copy in Sent."""
    form = {
        "csrf": "x",
        "sender": ALICE,
        "to": "bob@ministry.govt.nz",
        "cc": "",
        "subject": "Budget",
        "body": "Hi Bob",
        "classification": "IN-CONFIDENCE",
        "receipt": "yes",
        "action": "send",
    }
    response = webmail.client.post(
        "/mail/compose",
        data=form,
        files={"attachments": ("a.txt", b"numbers", "text/plain")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    [received] = webmail.admitted.received
    assert received.listener == "submission" and received.auth_user == ALICE
    assert received.mail_from == ALICE and received.recipients == ("bob@ministry.govt.nz",)
    assert received.body.startswith(b"Received: from webmail ([127.0.0.1])")
    assert b"SEC=IN-CONFIDENCE" in received.body and b"Disposition-Notification-To" in received.body
    [sent] = list((webmail.root / ".Sent" / "cur").iterdir())
    assert sent.name.endswith(":2,S")
    assert b"Received:" not in sent.read_bytes() and b"Hi Bob" in sent.read_bytes()
    confirmation = webmail.client.get(response.headers["location"]).text
    assert "Your message is on its way" in confirmation
    [copy] = re.findall(r'href="(/mail/read\?folder=Sent&amp;key=[^"]+)"', confirmation)
    page = webmail.client.get(html.unescape(copy)).text
    assert "Budget [SEC=IN-CONFIDENCE]" in page and "a.txt" in page
    assert '<h2 id="panel-heading">Sent through SecureMail</h2>' in page
    assert SEAL.origin_of(ALICE, sent.read_bytes()) is Origin.SENT


def test_labelled_mail_to_a_non_member_is_refused_before_sending(webmail: Webmail) -> None:
    """Routing refuses IN-CONFIDENCE to a domain outside SecureMail: nothing is admitted."""
    form = {
        "csrf": "x",
        "sender": ALICE,
        "to": ["bob@ministry.govt.nz", "someone@gmail.example"],
        "subject": "Budget",
        "body": "x",
        "classification": "IN-CONFIDENCE",
        "action": "send",
    }
    response = webmail.client.post("/mail/compose", data=form)
    assert response.status_code == 400
    assert "Outside SecureMail" in response.text and "SecureMail member" in response.text
    assert "Cannot be sent" in response.text
    assert webmail.admitted.received == []


def test_check_shows_per_recipient_membership_without_sending(webmail: Webmail) -> None:
    """Checking recipients marks members and outsiders and admits nothing."""
    form = {
        "csrf": "x",
        "sender": ALICE,
        "to": ["bob@ministry.govt.nz", "someone@gmail.example"],
        "subject": "s",
        "body": "x",
        "action": "check",
    }
    response = webmail.client.post("/mail/compose", data=form)
    assert response.status_code == 400  # the node has no smarthost: outsiders are unreachable
    assert response.text.count("SecureMail member</span>") == 1
    assert response.text.count("Outside SecureMail</span>") == 1
    assert webmail.admitted.received == []


def test_injection_through_the_form_is_refused_with_nothing_admitted(webmail: Webmail) -> None:
    """A Subject with CR LF posted to the page gives 400 and admits nothing."""
    form = {
        "csrf": "x",
        "sender": ALICE,
        "to": ["bob@ministry.govt.nz"],
        "subject": "a\r\nBcc: eve@evil.example",
        "body": "x",
        "action": "send",
    }
    response = webmail.client.post("/mail/compose", data=form)
    assert response.status_code == 400 and "control characters" in response.text
    assert webmail.admitted.received == []


def test_one_field_takes_many_addresses_and_bcc_stays_out_of_the_message(webmail: Webmail) -> None:
    """To takes several addresses separated by commas (a quoted display name with a comma
    is one); Bcc recipients are in the envelope but in no header of the message sent."""
    form = {
        "csrf": "x",
        "sender": ALICE,
        "to": '"Example, Bob" <bob@ministry.govt.nz>, carol@ministry.govt.nz',
        "cc": "dan@ministry.govt.nz; ",
        "bcc": "erin@ministry.govt.nz",
        "subject": "Figures",
        "body": "Hello",
        "action": "send",
    }
    response = webmail.client.post("/mail/compose", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    [received] = webmail.admitted.received
    assert received.recipients == (
        "bob@ministry.govt.nz",
        "carol@ministry.govt.nz",
        "dan@ministry.govt.nz",
        "erin@ministry.govt.nz",
    )
    assert b"erin@" not in received.body
    assert b"To: bob@ministry.govt.nz, carol@ministry.govt.nz" in received.body


def test_draft_is_saved_reopened_and_dropped_once_sent(webmail: Webmail) -> None:
    """Save draft files the message (Bcc kept, nothing admitted) in Drafts, flagged D; the
    compose page reopens it; saving again replaces it; sending it removes it from Drafts."""
    form = {
        "csrf": "x",
        "sender": ALICE,
        "to": "bob@ministry.govt.nz",
        "bcc": "erin@ministry.govt.nz",
        "subject": "Half written",
        "body": "To be continued",
        "action": "draft",
    }
    saved = webmail.client.post("/mail/compose", data=form, follow_redirects=False)
    assert saved.status_code == 303 and "mode=draft" in saved.headers["location"]
    assert webmail.admitted.received == []
    drafts = webmail.root / ".Drafts" / "cur"
    [kept] = list(drafts.iterdir())
    assert kept.name.endswith(":2,DS") and b"Bcc: erin@ministry.govt.nz" in kept.read_bytes()
    page = webmail.client.get(saved.headers["location"]).text
    assert "Draft saved in Drafts." in page and 'value="Half written"' in page
    assert 'value="erin@ministry.govt.nz"' in page
    key = re.findall(r'name="draft" value="([^"]+)"', page)[0]
    again = webmail.client.post(
        "/mail/compose", data=form | {"draft": key, "body": "Now done"}, follow_redirects=False
    )
    [kept] = list(drafts.iterdir())
    assert b"Now done" in kept.read_bytes()
    key = parse_qs(urlsplit(again.headers["location"]).query)["key"][0]
    sent = webmail.client.post(
        "/mail/compose", data=form | {"draft": key, "action": "send"}, follow_redirects=False
    )
    assert sent.status_code == 303 and len(webmail.admitted.received) == 1
    assert list(drafts.iterdir()) == []
