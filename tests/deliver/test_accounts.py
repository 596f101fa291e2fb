"""Delivery by mailbox accounts: aliases go to the primary mailbox, unknown is 550, quotas 452."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from securemail.accounts.model import Mailbox
from securemail.deliver import MaildirTarget
from securemail.deliver.quota import mailbox_usage
from securemail.replies import Reply

BODY = b"From: a@x.example\r\nTo: bob@y.example\r\nSubject: Budget\r\n\r\n" + b"x" * 900 + b"\r\n"


class Accounts:
    """Mailboxes for one account, bob@y.example, with an alias and a quota."""

    def __init__(self, quota: int | None) -> None:
        self.quota = quota

    def mailbox_for(self, address: str) -> Mailbox | None:
        if address.lower() in ("bob@y.example", "robert@y.example", "bob@other.example"):
            return Mailbox("bob@y.example", "bob@y.example", self.quota)
        return None


def deliver(target: MaildirTarget, rcpt: str, key: str) -> Reply:
    return asyncio.run(target.deliver("a@x.example", [rcpt], BODY, key))[rcpt]


def test_alias_delivers_to_the_primary_mailbox(tmp_path: Path) -> None:
    """Mail to an alias, in any case, lands in the primary's Maildir with Delivered-To the alias."""
    target = MaildirTarget(tmp_path, accounts=Accounts(None))
    assert deliver(target, "Robert@Y.example", "01").code == 250
    assert deliver(target, "bob@other.example", "02").code == 250
    new = tmp_path / "y.example" / "bob" / "new"
    assert len(os.listdir(new)) == 2
    assert not (tmp_path / "y.example" / "robert").exists()
    assert not (tmp_path / "other.example").exists()
    texts = [(new / n).read_bytes() for n in os.listdir(new)]
    assert any(b"Delivered-To: Robert@Y.example\n" in t for t in texts)


def test_address_without_account_is_550(tmp_path: Path) -> None:
    """With accounts, an address no account holds is 550 5.1.1 and no folder is made."""
    reply = deliver(MaildirTarget(tmp_path, accounts=Accounts(None)), "eve@y.example", "01")
    assert (reply.code, reply.status) == (550, "5.1.1")
    assert list(tmp_path.iterdir()) == []


def test_over_quota_is_452_until_mail_is_deleted(tmp_path: Path) -> None:
    """A delivery past the quota is 452 4.2.2 and stores nothing; after a delete it goes in."""
    target = MaildirTarget(tmp_path, accounts=Accounts(2500))
    assert deliver(target, "bob@y.example", "01").code == 250
    assert deliver(target, "robert@y.example", "02").code == 250
    full = deliver(target, "bob@y.example", "03")
    assert (full.code, full.status, full.text, full.reason) == (
        452,
        "4.2.2",
        "Mailbox full",
        "mailbox-full",
    )
    new = tmp_path / "y.example" / "bob" / "new"
    assert len(os.listdir(new)) == 2 and os.listdir(new.parent / "tmp") == []
    os.unlink(new / sorted(os.listdir(new))[0])  # the user makes room
    assert deliver(target, "bob@y.example", "03").code == 250


def test_usage_counts_folders_and_unsized_names(tmp_path: Path) -> None:
    """Usage sums new/ and cur/ of INBOX and Maildir++ folders, by ,S= or by file size."""
    box = tmp_path / "box"
    for folder in ("new", "cur", "tmp", ".Sent/cur", ".Sent/new", ".Sent.2024/cur"):
        (box / folder).mkdir(parents=True)
    (box / "new" / "a,S=100").write_bytes(b"ignored: the name says 100")
    (box / "cur" / "b,S=50:2,S").write_bytes(b"")
    (box / "tmp" / "c").write_bytes(b"x" * 1000)  # not delivered yet
    (box / ".Sent" / "cur" / "d:2,S").write_bytes(b"x" * 7)  # pymap APPEND names have no S=
    (box / ".Sent.2024" / "cur" / "e,S=3").write_bytes(b"")
    assert mailbox_usage(box) == 160
    assert mailbox_usage(tmp_path / "missing") == 0


def test_usage_of_ten_thousand_messages_is_quick(tmp_path: Path) -> None:
    """The quota scan of a 10,000-message mailbox takes well under half a second."""
    box = tmp_path / "box"
    for folder in ("new", "cur"):
        (box / folder).mkdir(parents=True)
    for i in range(10_000):
        name = f"{i:040x}.securemail,S=4096:2,S" if i % 2 else f"{i}.host:2,S"
        with open(box / "cur" / name, "wb") as file:
            file.write(b"x" * (4096 if i % 2 == 0 else 0))
    started = time.perf_counter()
    usage = mailbox_usage(box)
    elapsed = time.perf_counter() - started
    assert usage == 10_000 * 4096
    assert elapsed < 0.5, f"{elapsed:.3f}s"
