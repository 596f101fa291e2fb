"""The IMAP server: TLS before login, one answer for every refused login, folders and IDLE."""

from __future__ import annotations

import imaplib
import os
import re
import stat

import pytest

from securemail.deliver.maildir import mailbox_path
from tests.imap.conftest import BOB, PASSWORD, Imap


def capabilities(client: imaplib.IMAP4) -> set[str]:
    typ, data = client.capability()
    assert typ == "OK"
    return set(data[0].decode().upper().split())


def refusal(imap: Imap, name: str, password: str) -> str:
    client = imap.plain()
    client.starttls(imap.client_tls)
    with pytest.raises(imaplib.IMAP4.error) as refused:
        client.login(name, password)
    client.logout()
    return str(refused.value)


def test_starttls_then_login_offers_idle_uidplus_and_move(imap: Imap) -> None:
    """After STARTTLS, LOGIN works and the session has IDLE, UIDPLUS and MOVE."""
    client = imap.logged_in()
    assert {"IMAP4REV1", "IDLE", "UIDPLUS", "MOVE"} <= capabilities(client)
    assert imap.accounts.calls[-1][1:] == ("imap", "127.0.0.1")
    client.logout()


def test_login_before_tls_is_refused_without_asking_the_authenticator(imap: Imap) -> None:
    """On the plain port, before STARTTLS: LOGINDISABLED, no AUTH=, and LOGIN fails."""
    client = imap.plain()
    offered = capabilities(client)
    assert {"STARTTLS", "LOGINDISABLED"} <= offered
    assert not any(c.startswith("AUTH=") for c in offered)
    with pytest.raises(imaplib.IMAP4.error):
        client.login(BOB, PASSWORD)
    with pytest.raises(imaplib.IMAP4.error):
        client.select("INBOX")
    assert imap.accounts.calls == []
    client.logout()


def test_implicit_tls_port_takes_authenticate_plain(imap: Imap) -> None:
    """The TLS port offers AUTH=PLAIN and no STARTTLS; AUTHENTICATE PLAIN logs in."""
    client = imaplib.IMAP4_SSL("127.0.0.1", imap.tls_port, ssl_context=imap.client_tls, timeout=10)
    offered = capabilities(client)
    assert "AUTH=PLAIN" in offered and "STARTTLS" not in offered
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{BOB}\0{PASSWORD}".encode())
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_refusals_are_indistinguishable_but_a_throttle_says_later(imap: Imap) -> None:
    """Wrong password, unknown user and a disabled account get the same NO; a throttle differs."""
    wrong = refusal(imap, BOB, "wrong")
    assert "AUTHENTICATIONFAILED" in wrong
    assert refusal(imap, "nobody@y.example", "wrong") == wrong
    assert refusal(imap, "eve@y.example", PASSWORD) == wrong
    imap.accounts.throttled.add("127.0.0.1")
    later = refusal(imap, BOB, PASSWORD)
    assert later != wrong and "later" in later and "UNAVAILABLE" in later


def test_plain_authzid_of_another_user_is_refused(imap: Imap) -> None:
    """AUTHENTICATE PLAIN with someone else's authorization identity does not log in."""
    client = imaplib.IMAP4_SSL("127.0.0.1", imap.tls_port, ssl_context=imap.client_tls, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        client.authenticate("PLAIN", lambda _: f"eve@y.example\0{BOB}\0{PASSWORD}".encode())
    client.logout()


def test_first_login_creates_the_maildir(imap: Imap) -> None:
    """The account's Maildir is made on first login, with $SecureMail defined."""
    box = imap.root / "y.example" / "bob"
    assert not box.exists()
    client = imap.logged_in("Bob@Y.example")
    assert all((box / d).is_dir() for d in ("tmp", "new", "cur"))
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"0"])
    assert b"$SecureMail" in b" ".join(client.response("FLAGS")[1] or [b""])
    client.logout()


def test_verified_mail_carries_the_keyword_and_unverified_does_not(imap: Imap) -> None:
    """FETCH FLAGS shows $SecureMail on verified mail only; SEARCH KEYWORD finds just that."""
    client = imap.logged_in()
    assert imap.deliver(BOB, "01", verified=True) == 250
    assert imap.deliver(BOB, "02", verified=False) == 250
    assert client.select("INBOX") == ("OK", [b"2"])
    typ, data = client.fetch("1:2", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    flags = {_subject(item): _flags(item) for item in data if isinstance(item, tuple)}
    assert flags == {"01": {"$SecureMail"}, "02": set()}
    assert client.search(None, "KEYWORD", "$SecureMail") == ("OK", [b"1"])
    assert client.search(None, "UNKEYWORD", "$SecureMail") == ("OK", [b"2"])
    client.logout()


def test_alias_mail_is_in_the_primary_mailbox(imap: Imap) -> None:
    """Mail to an alias is read by logging in as the account."""
    assert imap.deliver("Robert@y.example", "0a", verified=True) == 250
    client = imap.logged_in()
    assert client.select("INBOX") == ("OK", [b"1"])
    client.logout()


def test_idle_sees_a_new_delivery(imap: Imap) -> None:
    """A client in IDLE is told of a message delivered while it waits (EXISTS)."""
    client = imap.logged_in()
    client.select("INBOX")
    client.send(b"i1 IDLE\r\n")
    assert client.readline().startswith(b"+")
    assert imap.deliver(BOB, "03", verified=True) == 250
    assert client.readline().strip() == b"* 1 EXISTS"
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(b"i1 "):
        assert line.startswith(b"*")
    assert line.startswith(b"i1 OK")
    client.logout()


def test_uid_move_keeps_the_keyword(imap: Imap) -> None:
    """UID MOVE to a new folder works (COPYUID), and the moved message keeps $SecureMail."""
    assert imap.deliver(BOB, "04", verified=True) == 250
    client = imap.logged_in()
    assert client.create("Projects")[0] == "OK"
    assert client.create("Archive")[0] == "NO"  # every mailbox has one (SPECIAL-USE)
    client.select("INBOX")
    typ, data = client.uid("MOVE", "1:*", "Projects")
    assert typ == "OK" and b"COPYUID" in b" ".join(_texts(client, data))
    assert client.select("INBOX") == ("OK", [b"0"])
    assert client.select("Projects") == ("OK", [b"1"])
    assert client.search(None, "KEYWORD", "$SecureMail") == ("OK", [b"1"])
    client.logout()


def test_append_answers_appenduid(imap: Imap) -> None:
    """APPEND answers [APPENDUID validity uid] (UIDPLUS) and the message is there."""
    client = imap.logged_in()
    client.create("Sent")
    typ, data = client.append("Sent", "(\\Seen)", None, b"Subject: sent\r\n\r\nHi.\r\n")
    assert typ == "OK"
    assert re.search(rb"\[APPENDUID \d+ 1\]", data[0])
    assert client.select("Sent") == ("OK", [b"1"])
    client.logout()


def test_full_mailbox_defers_until_the_user_deletes_mail(imap: Imap) -> None:
    """Over quota a delivery is 452 (kept queued); after expunging a message it goes in."""
    account = imap.accounts.accounts[BOB]
    imap.accounts.accounts[BOB] = type(account)(**{**account.__dict__, "quota": 450})
    big = b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n"
    assert imap.deliver(BOB, "05", verified=True, body=big) == 250
    assert imap.deliver(BOB, "06", verified=True, body=big) == 452
    client = imap.logged_in()
    client.select("INBOX")
    client.store("1", "+FLAGS", "(\\Deleted)")
    client.expunge()
    assert imap.deliver(BOB, "06", verified=True, body=big) == 250
    client.logout()


def _subject(item: tuple[bytes, bytes]) -> str:
    return item[1].decode().partition(":")[2].strip()


def _flags(item: tuple[bytes, bytes]) -> set[str]:
    match = re.search(rb"FLAGS \(([^)]*)\)", item[0])
    assert match is not None
    return set(match[1].decode().split()) - {"\\Recent", "\\Seen"}


def _texts(client: imaplib.IMAP4, data: list[bytes | None]) -> list[bytes]:
    untagged = [d for d in (client.untagged_responses.get("OK") or []) if isinstance(d, bytes)]
    return [d for d in data if d is not None] + untagged


def test_appended_mail_and_created_folders_are_private(imap: Imap) -> None:
    """A message a client APPENDs (cleartext at rest) is 0600 and a folder it CREATEs 0700,
    as delivery writes them, whatever the umask grants (the stdlib would make 0644)."""
    previous = os.umask(0o022)
    try:
        client = imap.logged_in()
        client.create("Drafts")
        client.append("Drafts", None, None, b"Subject: draft\r\n\r\nNot sent yet.\r\n")
        client.append("INBOX", None, None, b"Subject: note\r\n\r\nTo self.\r\n")
        client.logout()
    finally:
        os.umask(previous)
    mailbox = mailbox_path(imap.root, BOB)
    assert mailbox is not None
    files = [
        p for f in (mailbox, mailbox / ".Drafts") for s in ("new", "cur") for p in (f / s).iterdir()
    ]
    assert len(files) == 2 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    folders = [
        mailbox,
        mailbox / ".Drafts",
        *(mailbox / ".Drafts" / s for s in ("tmp", "new", "cur")),
    ]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o700 for f in folders)
