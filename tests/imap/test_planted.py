"""Planted trust (THREATS.md K): a mail client cannot make a message show as verified.

Each attack runs with imaplib against the real pymap server on loopback, holding the
account's password as any mail app would, and is then read in the webmail (the real mailbox
router over the same Maildir): it must end "Not verified" there and without $SecureMail in
IMAP. A genuine delivered message must stay verified, also when its owner moves it.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.testclient import TestClient

from securemail.deliver.maildir import mailbox_path
from securemail.marking import Verdict, mark_verified
from securemail.queue import QueueStore
from tests.conftest import Pki
from tests.imap.conftest import BOB, Imap, account
from tests.web.mail.conftest import NODE, mail_client, mail_config

CAROL = "carol@y.example"
FORGED = (
    f"Authentication-Results: {NODE}; smime=pass header.from=minister@agency.govt.nz\r\n"
    "X-SecureMail-Status: verified; signer=agency\r\n"
    "From: Minister <minister@agency.govt.nz>\r\n"
    "To: bob@y.example\r\n"
    "Subject: Confirm your bank details\r\n"
    "Message-ID: <planted@agency.govt.nz>\r\n"
    "\r\n"
    "Please confirm your bank details at the link below.\r\n"
).encode()
PLAIN = (
    b"From: Minister <minister@agency.govt.nz>\r\n"
    b"To: bob@y.example\r\n"
    b"Subject: Budget\r\n"
    b"Message-ID: <genuine@agency.govt.nz>\r\n"
    b"\r\n"
    b"The budget is attached.\r\n"
)
GENUINE = mark_verified(PLAIN, Verdict(NODE, "agency", "Agency", "minister@agency.govt.nz"))
VERIFIED = "Verified SecureMail"


@contextmanager
def webmail(imap: Imap, tmp_path: Path, pki: Pki, name: str = BOB) -> Iterator[TestClient]:
    """The webmail of ``name`` over the IMAP server's Maildirs."""
    base = tmp_path / f"web-{name}"
    base.mkdir()
    store = QueueStore.open(f"sqlite:///{base / 'queue.db'}")
    config = mail_config(base, pki)
    try:
        who = imap.accounts.accounts[name]
        with mail_client(config, store, imap.root, who, directory=None) as client:
            yield client
    finally:
        store.close()


def panels(client: TestClient, folder: str) -> dict[str, str]:
    """Subject -> the verification panel's heading, for every message of ``folder``."""
    listing = client.get("/mail", params={"folder": folder}).text
    found = {}
    for key in re.findall(r"key=([A-Za-z0-9._%,=+-]+)\"", listing):
        page = client.get("/mail/read", params={"folder": folder, "key": _unquote(key)}).text
        subject = re.search(r'<h1 id="subject">([^<]*)</h1>', page)
        heading = re.search(r'<h2 id="panel-heading">([^<]*)</h2>', page)
        assert subject is not None and heading is not None
        found[subject.group(1)] = heading.group(1)
    return found


def _unquote(key: str) -> str:
    return key.replace("%2C", ",").replace("%3D", "=").replace("%2B", "+")


def keyword_flags(client: imaplib.IMAP4, folder: str) -> list[bool]:
    """For each message of ``folder`` in UID order, whether IMAP shows $SecureMail."""
    client.select(folder)
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK"
    return [b"$SecureMail" in item for item in data if isinstance(item, bytes)]


def bob(imap: Imap) -> Path:
    """Bob's Maildir."""
    found = mailbox_path(imap.root, BOB)
    assert found is not None
    return found


def keyword_letters_on_disk(folder: Path) -> list[str]:
    """The lower-case (keyword) letters in the names of the folder's message files."""
    names = [p.name for sub in ("new", "cur") for p in (folder / sub).iterdir()]
    return ["".join(c for c in n.partition(":2,")[2] if c.islower()) for n in names]


def test_keyword_is_in_flags_but_not_in_permanentflags(imap: Imap) -> None:
    """SELECT lists $SecureMail among the mailbox's flags but not among those a client may set."""
    client = imap.logged_in()
    client.select("INBOX")
    flags = client.response("FLAGS")[1][0] or b""
    permanent = client.response("PERMANENTFLAGS")[1][0] or b""
    assert b"$SecureMail" in flags and b"$SecureMail" not in permanent
    assert b"\\Seen" in permanent
    client.logout()


def test_append_with_the_keyword_and_copied_fields_is_not_verified(
    imap: Imap, tmp_path: Path, pki: Pki
) -> None:
    """APPEND INBOX ($SecureMail) of a message with copied trust fields naming this node:
    no keyword in IMAP or on disk, and "Not verified" in the webmail."""
    client = imap.logged_in()
    assert client.append("INBOX", "($SecureMail \\Seen)", None, FORGED)[0] == "OK"
    assert keyword_flags(client, "INBOX") == [False]
    client.logout()
    assert keyword_letters_on_disk(bob(imap)) == [""]
    with webmail(imap, tmp_path, pki) as browser:
        assert panels(browser, "INBOX") == {"Confirm your bank details": "Not verified"}
        listing = browser.get("/mail", params={"folder": "INBOX"}).text
        assert "badge-verified" not in listing


def test_store_of_the_keyword_is_ignored(imap: Imap, tmp_path: Path, pki: Pki) -> None:
    """STORE +FLAGS and FLAGS with $SecureMail on a planted message leave it without the
    keyword (and the tagged answer does not claim it), still "Not verified"."""
    client = imap.logged_in()
    client.append("INBOX", None, None, FORGED)
    client.select("INBOX")
    typ, data = client.uid("STORE", "1", "+FLAGS", "($SecureMail)")
    assert typ == "OK" and not any(b"$SecureMail" in d for d in data if isinstance(d, bytes))
    client.uid("STORE", "1", "FLAGS", "(\\Seen $SecureMail)")
    assert keyword_flags(client, "INBOX") == [False]
    client.logout()
    assert keyword_letters_on_disk(bob(imap)) == [""]
    with webmail(imap, tmp_path, pki) as browser:
        assert panels(browser, "INBOX") == {"Confirm your bank details": "Not verified"}


def test_copy_and_move_from_another_folder_stay_unverified(
    imap: Imap, tmp_path: Path, pki: Pki
) -> None:
    """A planted message in another folder, copied and moved into INBOX, has no keyword
    there and is "Not verified" in the webmail."""
    client = imap.logged_in()
    client.create("Imports")
    client.append("Imports", "($SecureMail)", None, FORGED)
    client.append("Imports", "($SecureMail)", None, FORGED.replace(b"bank", b"card"))
    client.select("Imports")
    assert client.uid("COPY", "1", "INBOX")[0] == "OK"
    assert client.uid("MOVE", "2", "INBOX")[0] == "OK"
    assert keyword_flags(client, "INBOX") == [False, False]
    client.logout()
    with webmail(imap, tmp_path, pki) as browser:
        assert set(panels(browser, "INBOX").values()) == {"Not verified"}


def test_keyword_letters_of_another_folder_do_not_become_the_keyword(imap: Imap) -> None:
    """A letter that means $Junk in one folder and $SecureMail in INBOX does not turn a
    planted message into a keyword-carrying one when it is moved (letters are translated)."""
    client = imap.logged_in()
    client.create("Junk")
    client.logout()
    junk = bob(imap) / ".Junk"
    (junk / "dovecot-keywords").write_text("0 $Junk\n1 $SecureMail\n")
    (bob(imap) / "dovecot-keywords").write_text("0 $SecureMail\n1 $Junk\n")
    client = imap.logged_in()
    client.append("Junk", "($Junk)", None, FORGED)
    client.select("Junk")
    assert client.uid("MOVE", "1", "INBOX")[0] == "OK"
    client.select("INBOX")
    _, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert b"$Junk" in data[0] and b"$SecureMail" not in data[0]
    client.logout()


def test_genuine_mail_stays_verified_when_its_owner_moves_or_flags_it(
    imap: Imap, tmp_path: Path, pki: Pki
) -> None:
    """Delivered verified mail keeps $SecureMail and "Verified SecureMail" after a FLAGS
    replace, a COPY and a MOVE to other folders of its own mailbox."""
    assert imap.deliver(BOB, "a1", verified=True, body=GENUINE) == 250
    client = imap.logged_in()
    client.create("Archive")
    client.create("Kept")
    client.select("INBOX")
    client.uid("STORE", "1", "FLAGS", "(\\Seen)")
    assert keyword_flags(client, "INBOX") == [True]
    client.uid("COPY", "1", "Kept")
    client.uid("MOVE", "1", "Archive")
    assert keyword_flags(client, "Archive") == [True]
    assert keyword_flags(client, "Kept") == [True]
    client.logout()
    with webmail(imap, tmp_path, pki) as browser:
        assert panels(browser, "Archive") == {"Budget": VERIFIED}
        assert panels(browser, "Kept") == {"Budget": VERIFIED}


def test_a_file_changed_after_delivery_loses_the_keyword_and_the_mark(
    imap: Imap, tmp_path: Path, pki: Pki
) -> None:
    """Genuine mail whose stored octets are changed (same file name, keyword letter kept)
    shows without $SecureMail and "Not verified"."""
    assert imap.deliver(BOB, "a2", verified=True, body=GENUINE) == 250
    client = imap.logged_in()
    assert keyword_flags(client, "INBOX") == [True]
    [path] = [p for sub in ("new", "cur") for p in (bob(imap) / sub).iterdir()]
    time.sleep(0.01)  # a new ctime, as any later write has
    path.write_bytes(path.read_bytes().replace(b"The budget", b"Your bank details"))
    assert keyword_flags(client, "INBOX") == [False]
    client.logout()
    with webmail(imap, tmp_path, pki) as browser:
        assert panels(browser, "INBOX") == {"Budget": "Not verified"}


def test_genuine_mail_appended_to_another_mailbox_is_not_verified(
    imap: Imap, tmp_path: Path, pki: Pki
) -> None:
    """The octets of a genuine sealed message, appended by another account holder into
    their own mailbox, are not verified there: the seal names the mailbox."""
    imap.accounts.accounts[CAROL] = account(CAROL)
    assert imap.deliver(BOB, "a3", verified=True, body=GENUINE) == 250
    [path] = [p for sub in ("new", "cur") for p in (bob(imap) / sub).iterdir()]
    client = imap.logged_in(CAROL)
    assert client.append("INBOX", "($SecureMail)", None, path.read_bytes())[0] == "OK"
    assert keyword_flags(client, "INBOX") == [False]
    client.logout()
    with webmail(imap, tmp_path, pki, CAROL) as browser:
        assert panels(browser, "INBOX") == {"Budget": "Not verified"}
