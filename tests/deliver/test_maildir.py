"""Maildir delivery: readable by mail clients, durable, exactly once per key, safe paths."""

from __future__ import annotations

import asyncio
import errno
import mailbox
import os
import stat
from pathlib import Path

import pytest

from securemail.deliver import MaildirTarget
from securemail.deliver.maildir import mailbox_path, message_name
from securemail.deliver.target import StoreUncertainError
from securemail.replies import Reply

BODY = b"From: a@x.example\r\nTo: bob@y.example\r\nSubject: Budget\r\n\r\nThe figures.\r\n"
KEY = "ab" * 32


def deliver(target: MaildirTarget, recipients: list[str], key: str = KEY) -> dict[str, Reply]:
    return asyncio.run(target.deliver("a@x.example", recipients, BODY, key))


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_delivered_message_reads_in_python_mailbox(tmp_path: Path) -> None:
    """A delivered message is in new/ and opens with mailbox.Maildir, with trace headers."""
    results = deliver(MaildirTarget(tmp_path), ["Bob@Y.example"])
    assert results["Bob@Y.example"].code == 250
    box = mailbox.Maildir(tmp_path / "y.example" / "bob", create=False)
    [message] = list(box)
    assert message["Subject"] == "Budget"
    assert message["Delivered-To"] == "Bob@Y.example"
    assert message["Return-Path"] == "<a@x.example>"
    assert message.get_payload() == "The figures.\n"  # LF line ends, as Postfix stores them


def test_second_delivery_of_the_same_key_stores_nothing(tmp_path: Path) -> None:
    """Redelivering the same key is 250 and leaves one file, also after a client read it."""
    target = MaildirTarget(tmp_path)
    deliver(target, ["bob@y.example"])
    new = tmp_path / "y.example" / "bob" / "new"
    cur = new.parent / "cur"
    assert deliver(target, ["bob@y.example"])["bob@y.example"].code == 250
    assert len(files(new)) == 1
    [name] = files(new)
    os.rename(new / name, cur / f"{name}:2,S")  # what a mail client does when it reads it
    assert deliver(target, ["bob@y.example"])["bob@y.example"].code == 250
    assert files(new) == [] and files(cur) == [f"{name}:2,S"]


def test_a_fresh_recipient_is_not_looked_for(tmp_path: Path) -> None:
    """For a recipient the caller says is FRESH the folders are not listed: a copy a
    client moved to cur/ is not found (the caller's promise is that none can be there)."""
    target = MaildirTarget(tmp_path)
    deliver(target, ["bob@y.example"])
    new = tmp_path / "y.example" / "bob" / "new"
    [name] = files(new)
    os.rename(new / name, new.parent / "cur" / f"{name}:2,S")
    fresh = asyncio.run(
        target.deliver("a@x.example", ["bob@y.example"], BODY, KEY, fresh={"bob@y.example"})
    )
    assert fresh["bob@y.example"].code == 250
    assert files(new) == [name]


class FailingFolderSync(MaildirTarget):
    """A Maildir whose first ``failures`` folder fsyncs fail with EIO (the other I/O step
    tests override, as FullDisk does ``_write``)."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def _sync_folder(self, folder: Path) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super()._sync_folder(folder)


def test_a_failed_folder_fsync_takes_the_link_back(tmp_path: Path) -> None:
    """new/ cannot be synced: the link is removed (and that synced), the reply is 452
    4.3.1, nothing is left in new/ or tmp/, and a retry stores the message."""
    reply = deliver(FailingFolderSync(tmp_path, 1), ["bob@y.example"])["bob@y.example"]
    assert (reply.code, reply.status, reply.reason) == (452, "4.3.1", "store-unavailable")
    box = tmp_path / "y.example" / "bob"
    assert files(box / "new") == [] and files(box / "tmp") == []
    assert deliver(MaildirTarget(tmp_path), ["bob@y.example"])["bob@y.example"].code == 250
    assert len(files(box / "new")) == 1


def test_a_link_that_cannot_be_synced_nor_taken_back_is_uncertain(tmp_path: Path) -> None:
    """new/ cannot be synced, not even after the link was removed: the store cannot tell
    whether it holds the message, which is StoreUncertainError (with the reply), not a
    Reply that would let the caller release the key."""
    with pytest.raises(StoreUncertainError) as raised:
        deliver(FailingFolderSync(tmp_path, 2), ["bob@y.example"])
    reply = raised.value.reply
    assert (reply.code, reply.status, reply.reason) == (452, "4.3.1", "store-unavailable")


def test_concurrent_deliveries_of_one_key_store_it_once(tmp_path: Path) -> None:
    """Two workers delivering the same key at once leave a single copy."""
    target = MaildirTarget(tmp_path)

    async def both() -> None:
        await asyncio.gather(*(target.deliver("a@x", ["bob@y.example"], BODY, KEY) for _ in "12"))

    asyncio.run(both())
    assert len(files(tmp_path / "y.example" / "bob" / "new")) == 1
    assert files(tmp_path / "y.example" / "bob" / "tmp") == []


def test_different_keys_are_different_messages(tmp_path: Path) -> None:
    """Two messages (two keys) are two files."""
    target = MaildirTarget(tmp_path)
    deliver(target, ["bob@y.example"], "01")
    deliver(target, ["bob@y.example"], "02")
    assert len(files(tmp_path / "y.example" / "bob" / "new")) == 2


@pytest.mark.parametrize(
    "address",
    [
        "../etc@y.example",
        ".hidden@y.example",
        "a/b@y.example",
        "a\\b@y.example",
        "a\0b@y.example",
        "a\nb@y.example",
        "bob@..",
        "bob@../y",
        "bob@.y.example",
        "bob@y.example/..",
        "no-at-sign",
        "@y.example",
        "bob@",
        "a..b@y.example",
        "x" * 65 + "@y.example",
    ],
)
def test_path_tricks_in_addresses_are_refused(tmp_path: Path, address: str) -> None:
    """Addresses that would escape or hide in the Maildir tree are 550 5.1.3; nothing is written."""
    root = tmp_path / "root"
    root.mkdir()
    reply = deliver(MaildirTarget(root), [address])[address]
    assert (reply.code, reply.status) == (550, "5.1.3")
    assert list(tmp_path.rglob("*")) == [root]


def test_unknown_mailbox_is_refused_when_not_creating(tmp_path: Path) -> None:
    """With create_mailboxes off, only listed or existing mailboxes receive mail."""
    target = MaildirTarget(tmp_path, create_mailboxes=False, mailboxes=frozenset({"Bob@y.example"}))
    results = deliver(target, ["bob@y.example", "eve@y.example"])
    assert results["bob@y.example"].code == 250
    assert (results["eve@y.example"].code, results["eve@y.example"].status) == (550, "5.1.1")
    assert not (tmp_path / "y.example" / "eve").exists()
    existing = MaildirTarget(tmp_path, create_mailboxes=False)
    assert deliver(existing, ["bob@y.example"], "ff")["bob@y.example"].code == 250


def test_missing_root_is_temporary_and_not_created(tmp_path: Path) -> None:
    """A missing Maildir root (an unmounted volume) is 4xx, never a bounce, and is not created."""
    root = tmp_path / "not-mounted"
    reply = deliver(MaildirTarget(root, create_mailboxes=False), ["bob@y.example"])["bob@y.example"]
    assert reply.temporary
    assert not root.exists()


def test_files_and_folders_are_private(tmp_path: Path) -> None:
    """Messages are 0600 and mailbox folders 0700."""
    deliver(MaildirTarget(tmp_path), ["bob@y.example"])
    box = tmp_path / "y.example" / "bob"
    for folder in (box.parent, box, box / "new", box / "cur", box / "tmp"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [message] = (box / "new").iterdir()
    assert stat.S_IMODE(message.stat().st_mode) == 0o600


class FullDisk(MaildirTarget):
    """A Maildir whose disk fills up half way through writing a message.

    We run as root in CI, so permissions cannot fake a full disk, and no small tmpfs is
    available: the one I/O step ``_write`` is overridden to write part and raise ENOSPC.
    """

    def __init__(self, root: Path, error: int = errno.ENOSPC) -> None:
        super().__init__(root)
        self.error = error

    def _write(self, fd: int, content: bytes) -> None:
        os.write(fd, content[: len(content) // 2])
        raise OSError(self.error, os.strerror(self.error))


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_full_disk_is_temporary_and_leaves_nothing(tmp_path: Path, error: int) -> None:
    """ENOSPC, EDQUOT and EIO are 452 4.3.1; no half message in new/ or tmp/; a retry works."""
    reply = deliver(FullDisk(tmp_path, error), ["bob@y.example"])["bob@y.example"]
    assert (reply.code, reply.status, reply.temporary) == (452, "4.3.1", True)
    box = tmp_path / "y.example" / "bob"
    assert files(box / "new") == [] and files(box / "tmp") == []
    assert deliver(MaildirTarget(tmp_path), ["bob@y.example"])["bob@y.example"].code == 250


def test_message_key_must_be_hex(tmp_path: Path) -> None:
    """A key that is not hexadecimal is a caller bug, refused before anything is written."""
    with pytest.raises(ValueError, match="hexadecimal"):
        deliver(MaildirTarget(tmp_path), ["bob@y.example"], "../../x")


def test_name_is_stable_and_a_valid_maildir_name(tmp_path: Path) -> None:
    """The file name depends on key and recipient only and holds no '/' or ':'."""
    name = message_name(KEY, "Bob@y.example")
    assert name == message_name(KEY, "bob@y.example") != message_name(KEY, "eve@y.example")
    assert "/" not in name and ":" not in name
    assert mailbox_path(tmp_path, "Bob@Y.Example") == tmp_path / "y.example" / "bob"
