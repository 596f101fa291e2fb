"""The /mail pages against real Maildirs: list, verified badge and order, search, read with
the verification panel, sanitised HTML, attachments, seen flag, move and Trash."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from securemail.deliver.maildir import MaildirTarget
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.marking import Verdict, mark_ordinary, mark_verified
from tests.conftest import SEAL
from tests.web.mail.conftest import NODE, Webmail

PLAIN = (
    b"From: Bob Example <bob@ministry.govt.nz>\r\n"
    b"To: alice@agency.govt.nz\r\n"
    b"Subject: Budget figures\r\n"
    b"Date: Sun, 29 Nov 2026 12:00:00 +1300\r\n"
    b"Message-ID: <m1@ministry.govt.nz>\r\n"
    b"\r\n"
    b"The figures are attached.\r\n"
)
VERDICT = Verdict(
    NODE,
    "ministry",
    "Ministry (as written in the header)",
    "bob@ministry.govt.nz",
    "IN-CONFIDENCE",
    "sent",
)


def deliver(
    root: Path, message: bytes, key: str, *, verified: bool = False, mtime: float | None = None
) -> str:
    """Deliver as the node does (MaildirTarget); return the message key used in URLs."""
    target = MaildirTarget(root.parents[1], seal=SEAL)
    keywords = frozenset({SECUREMAIL_KEYWORD}) if verified else frozenset()
    replies = asyncio.run(
        target.deliver(
            "bob@ministry.govt.nz", ["alice@agency.govt.nz"], message, key, keywords=keywords
        )
    )
    assert replies["alice@agency.govt.nz"].code == 250
    name = next(
        p
        for d in ("new", "cur")
        for p in (root / d).iterdir()
        if p.name.startswith(replies["alice@agency.govt.nz"].detail.split()[1])
    )
    if mtime is not None:
        os.utime(name, (mtime, mtime))
    return name.name.partition(":")[0]


def verified_message(subject: bytes = b"Budget figures") -> bytes:
    return mark_verified(PLAIN.replace(b"Budget figures", subject), VERDICT)


def test_list_shows_a_verified_badge_and_sorts_verified_first(webmail: Webmail) -> None:
    """A verified message carries the text badge; "verified first" puts it above newer mail."""
    deliver(webmail.root, verified_message(b"Signed one"), "a1", verified=True, mtime=1_000)
    deliver(
        webmail.root,
        mark_ordinary(PLAIN.replace(b"Budget figures", b"Ordinary one"), NODE),
        "a2",
        mtime=2_000,
    )
    page = webmail.client.get("/mail").text
    assert page.index("Ordinary one") < page.index("Signed one")  # newest first
    assert page.count("Verified SecureMail</span>") == 1
    ordered = webmail.client.get("/mail", params={"sort": "verified"}).text
    assert ordered.index("Signed one") < ordered.index("Ordinary one")


def test_search_finds_subject_and_body_text(webmail: Webmail) -> None:
    """Search matches the Subject and the text, and leaves out messages that match neither."""
    deliver(webmail.root, PLAIN, "b1")
    deliver(
        webmail.root,
        PLAIN.replace(b"Budget figures", b"Lunch").replace(b"The figures", b"Sandwiches"),
        "b2",
    )
    by_body = webmail.client.get("/mail", params={"q": "sandwich"}).text
    assert "Lunch" in by_body and "Budget figures" not in by_body
    by_subject = webmail.client.get("/mail", params={"q": "BUDGET"}).text
    assert "Budget figures" in by_subject and "Lunch" not in by_subject


def test_read_shows_the_panel_with_the_directory_name_and_marks_seen(webmail: Webmail) -> None:
    """A verified message shows the directory's signer name, label and sender; reading sets S."""
    key = deliver(webmail.root, verified_message(), "c1", verified=True)
    page = webmail.client.get("/mail/read", params={"folder": "INBOX", "key": key}).text
    assert "Verified by SecureMail: signed by Test organisation ministry" in page
    assert "as written in the header" not in page  # the name comes from the directory only
    assert "IN-CONFIDENCE" in page and "bob@ministry.govt.nz" in page
    [stored] = list((webmail.root / "cur").iterdir())
    flags = stored.name.partition(":2,")[2]
    assert "S" in flags and re.search("[a-z]", flags)  # the keyword letter is kept
    assert ",S=" in stored.name


def test_forged_gateway_fields_from_outside_show_unverified(webmail: Webmail) -> None:
    """Trust fields an outsider wrote (right node name, no $SecureMail keyword) are not believed."""
    forged = (
        f"Authentication-Results: {NODE}; smime=pass header.from=bob@ministry.govt.nz\r\n"
        "X-SecureMail-Status: verified; signer=ministry; label=RESTRICTED\r\n"
    ).encode() + PLAIN
    key = deliver(webmail.root, forged, "d1")
    page = webmail.client.get("/mail/read", params={"folder": "INBOX", "key": key}).text
    assert "Not verified: this message did not come through SecureMail" in page
    assert "Verified by SecureMail" not in page and "RESTRICTED" not in page
    listing = webmail.client.get("/mail").text
    assert "Not verified</span>" in listing and "Verified SecureMail</span>" not in listing


def test_html_mail_is_sanitised_and_framed_without_scripts(webmail: Webmail) -> None:
    """Script, event handlers and remote images are gone; the HTML is in a sandboxed frame."""
    html = (
        b"<p>Hello</p><script>alert(1)</script>"
        b'<img src="https://tracker.example/p.png" onerror="alert(2)">'
        b'<a href="javascript:alert(3)">x</a><p style="background:url(https://x.example/)">y</p>'
    )
    message = PLAIN.replace(
        b"Message-ID", b"Content-Type: text/html; charset=utf-8\r\nMessage-ID"
    ).replace(b"The figures are attached.", html)
    key = deliver(webmail.root, message, "e1")
    page = webmail.client.get("/mail/read", params={"folder": "INBOX", "key": key}).text
    frame = re.search(r'<iframe [^>]*sandbox srcdoc="([^"]*)"', page)
    assert frame is not None
    assert "allow-scripts" not in page
    content = frame.group(1)
    for gone in ("script", "onerror", "tracker.example", "javascript:", "style=", "img"):
        assert gone not in content
    assert "Hello" in content


def test_attachment_downloads_with_a_safe_name_and_nosniff(webmail: Webmail) -> None:
    """An attachment is listed and served as a download, its name stripped of path and quotes."""
    message = (
        b"From: bob@ministry.govt.nz\r\nTo: alice@agency.govt.nz\r\nSubject: files\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--XX\r\nContent-Type: text/html\r\n"
        b'Content-Disposition: attachment; filename="../evil\\".html"\r\n\r\n'
        b"<script>alert(1)</script>\r\n--XX--\r\n"
    )
    key = deliver(webmail.root, message, "f1")
    page = webmail.client.get("/mail/read", params={"folder": "INBOX", "key": key}).text
    assert "see attached" in page
    response = webmail.client.get(
        "/mail/attachment", params={"folder": "INBOX", "key": key, "part": 1}
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="_evil_.html"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == "application/octet-stream"


def test_delete_moves_to_trash_and_move_keeps_flags(webmail: Webmail) -> None:
    """Delete moves the file into .Trash (created); the seen flag travels with it."""
    key = deliver(webmail.root, verified_message(), "b7", verified=True)
    webmail.client.get("/mail/read", params={"folder": "INBOX", "key": key})
    response = webmail.client.post(
        "/mail/delete", data={"folder": "INBOX", "key": key}, follow_redirects=False
    )
    assert response.status_code == 303
    [moved] = list((webmail.root / ".Trash" / "cur").iterdir())
    assert moved.name.startswith(key) and "S" in moved.name.partition(":2,")[2]
    trash = webmail.client.get("/mail", params={"folder": "Trash"}).text
    assert (
        "Budget figures" in trash and "Verified SecureMail</span>" in trash
    )  # keyword re-lettered
    webmail.client.post("/mail/move", data={"folder": "Trash", "key": key, "to": "INBOX"})
    assert any(p.name.startswith(key) for p in (webmail.root / "cur").iterdir())


def test_names_from_the_request_never_reach_a_path(webmail: Webmail) -> None:
    """An unknown folder or a key with path characters is 404, not a file read."""
    deliver(webmail.root, PLAIN, "ab")
    assert webmail.client.get("/mail", params={"folder": "../../etc"}).status_code == 404
    assert (
        webmail.client.get(
            "/mail/read", params={"folder": "INBOX", "key": "../../../etc/passwd"}
        ).status_code
        == 404
    )


def test_a_long_folder_pages_and_says_how_many_it_holds(webmail: Webmail) -> None:
    """A folder of 103 messages lists the newest 100, says "1 to 100 of 103" and links the
    older ones; nothing is cut silently."""
    for n in range(103):
        body = PLAIN.replace(b"Budget figures", f"Message {n:03}".encode())
        deliver(webmail.root, body, f"{n:04x}", mtime=1_700_000_000 + n)
    first = webmail.client.get("/mail", params={"folder": "INBOX"}).text
    assert "newest first: 1 to 100 of 103" in first
    assert "Message 102" in first and "Message 002" not in first
    [older] = re.findall(r'<a href="([^"]+)" rel="next">Older messages \(3 more\)</a>', first)
    assert "offset=100" in older
    rest = webmail.client.get("/mail", params={"folder": "INBOX", "offset": 100}).text
    assert "newest first: 101 to 103 of 103" in rest and "Message 000" in rest
    assert 'rel="prev"' in rest and 'rel="next"' not in rest


def test_list_sorts_by_sender_subject_and_oldest(webmail: Webmail) -> None:
    """The list sorts by sender and by subject (A to Z, "Re:" ignored) and oldest first,
    and shows dates in New Zealand time (12:00 +1300 on 29 Nov is 29 Nov there)."""
    for n, (sender, subject) in enumerate(
        [
            ("Zed <z@x.example>", "Re: apples"),
            ("Amy <a@x.example>", "cherries"),
            ("Kim <k@x.example>", "bananas"),
        ]
    ):
        body = PLAIN.replace(b"Bob Example <bob@ministry.govt.nz>", sender.encode())
        body = body.replace(b"Budget figures", subject.encode())
        deliver(webmail.root, body, f"{n:04x}", mtime=1_700_000_000 + n)

    def order(sort: str) -> list[str]:
        page = webmail.client.get("/mail", params={"sort": sort}).text
        return re.findall(r'key=[^"]+">(?:<span[^>]*>Unread: </span>)?([^<]+)</a>', page)

    assert order("newest") == ["bananas", "cherries", "Re: apples"]
    assert order("oldest") == ["Re: apples", "cherries", "bananas"]
    assert order("subject") == ["Re: apples", "bananas", "cherries"]
    assert order("sender") == ["cherries", "bananas", "Re: apples"]
    assert order("no-such-order") == order("newest")
    page = webmail.client.get("/mail").text
    assert '<time datetime="2026-11-28T23:00:00+00:00">29 Nov' in page


def test_special_use_folders_are_listed_in_the_order_mail_programs_use(webmail: Webmail) -> None:
    """Opening the webmail makes the mailbox's special-use folders; the folder list is
    INBOX, Drafts, Sent, Archive, Junk, Trash."""
    page = webmail.client.get("/mail").text
    names = re.findall(r'<a href="/mail\?folder=[^"]+"[^>]*>([^<]+)</a>', page)
    assert names[:6] == ["INBOX", "Drafts", "Sent", "Archive", "Junk", "Trash"]
