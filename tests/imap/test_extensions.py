"""SPECIAL-USE folders, NAMESPACE and QUOTA as a mail client sees them over imaplib."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from securemail.deliver.folders import SUBSCRIPTIONS
from securemail.deliver.maildir import mailbox_path
from tests.imap.conftest import BOB, Imap, account

USES = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk"}
USES |= {"Archive": "\\Archive"}


def maildir(imap: Imap) -> Path:
    found = mailbox_path(imap.root, BOB)
    assert found is not None
    return found


def listed(lines: Sequence[object]) -> dict[str, set[str]]:
    """LIST answer lines as folder name -> attributes."""
    found = {}
    for line in lines:
        assert isinstance(line, bytes), line
        match = re.fullmatch(rb'\(([^)]*)\) (?:"/"|NIL) "?([^"]*)"?', line)
        assert match, line
        found[match[2].decode()] = set(match[1].decode().split())
    return found


def test_new_mailbox_lists_the_five_special_use_folders(imap: Imap) -> None:
    """A first login creates Sent, Drafts, Trash, Junk and Archive; the capability says
    SPECIAL-USE, and LIST shows each with its RFC 6154 attribute, INBOX without one."""
    client = imap.logged_in()
    typ, data = client.capability()
    assert {"SPECIAL-USE", "NAMESPACE", "QUOTA"} <= set(data[0].decode().split())
    typ, lines = client.list('""', "*")
    assert typ == "OK"
    folders = listed(lines)
    for name, use in USES.items():
        assert use in folders[name], folders
    assert not folders["INBOX"] & set(USES.values())
    subscribed = listed(client.lsub('""', "*")[1])
    assert set(USES) <= set(subscribed)
    client.logout()


def test_list_special_use_selection_and_return_options(imap: Imap) -> None:
    """LIST (SPECIAL-USE) lists only the special-use folders; RETURN (SPECIAL-USE) is taken;
    another selection option is refused as not understood."""
    client = imap.logged_in()
    maildir(imap).joinpath(".Projects", "cur").mkdir(parents=True)
    for sub in ("new", "tmp"):
        maildir(imap).joinpath(".Projects", sub).mkdir()
    typ, lines = client._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
    assert typ == "OK"
    only = listed(client._untagged_response(typ, lines, "LIST")[1])
    assert set(only) == set(USES)
    typ, lines = client._simple_command("LIST", '""', "*", "RETURN", "(SPECIAL-USE)")
    every = listed(client._untagged_response(typ, lines, "LIST")[1])
    assert {"INBOX", "Projects"} <= set(every) and "\\Sent" in every["Sent"]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        client._simple_command("LIST", "(REMOTE)", '""', "*")
    assert client.noop()[0] == "OK"
    client.logout()


def test_existing_mailbox_gets_its_folders_at_next_login(imap: Imap) -> None:
    """A Maildir made before special-use folders existed (INBOX only, a client's own
    subscription) gets the five folders at the next login, the subscription kept."""
    root = maildir(imap)
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True)
    (root / SUBSCRIPTIONS).write_text("INBOX\r\n")
    client = imap.logged_in()
    assert {f".{name}" for name in USES} <= {p.name for p in root.iterdir()}
    lines = (root / SUBSCRIPTIONS).read_text().split()
    assert lines[0] == "INBOX" and set(USES) <= set(lines)
    client.logout()


def test_namespace_is_one_personal_namespace(imap: Imap) -> None:
    """NAMESPACE answers the personal namespace "" with delimiter "/" and nothing shared."""
    client = imap.logged_in()
    typ, data = client.namespace()
    assert typ == "OK" and data == [b'(("" "/")) NIL NIL']
    client.logout()


def test_quota_reports_usage_and_limit_in_kib(imap: Imap) -> None:
    """With a 10 MiB quota, GETQUOTAROOT INBOX names root "" and GETQUOTA reports the
    stored octets (rounded up to KiB) against 10240; without a quota there is no root."""
    client = imap.logged_in()
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK" and data[0] == [b"INBOX"], data
    assert client.getquota('""')[0] == "NO"
    client.logout()
    imap.accounts.accounts[BOB] = account(BOB, "robert@y.example", quota=10 * 2**20)
    assert imap.deliver(BOB, "a1", verified=False, body=b"Subject: q\r\n\r\n" + b"x" * 5000) == 250
    client = imap.logged_in()
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK" and data[0] == [b'INBOX ""'], data
    match = re.fullmatch(rb'"" \(STORAGE (\d+) 10240\)', data[1][0])
    assert match and 5 <= int(match[1]) <= 7, data
    typ, data = client.getquota('""')
    assert typ == "OK" and data[0].endswith(b" 10240)")
    assert client.getquotaroot("Nowhere")[0] == "NO"
    client.logout()


def test_sent_folder_takes_an_append_like_a_client_saving_its_copy(imap: Imap) -> None:
    """A client's APPEND to the \\Sent folder lands in the Maildir's .Sent (the folder the
    webmail files its copies in)."""
    client = imap.logged_in()
    message = b"From: bob@y.example\r\nSubject: copy\r\n\r\nSent.\r\n"
    assert client.append("Sent", "(\\Seen)", None, message)[0] == "OK"
    assert client.select("Sent")[1] == [b"1"]
    files = list(maildir(imap).joinpath(".Sent", "cur").iterdir())
    assert len(files) == 1 and b"Subject: copy" in files[0].read_bytes()
    client.logout()
