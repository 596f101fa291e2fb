"""IMAP keywords on delivered mail: the dovecot-keywords file and cur/ names with letters."""

from __future__ import annotations

import asyncio
import mailbox
import os
from pathlib import Path

import pytest

from securemail.deliver import MaildirTarget
from securemail.deliver.keywords import keyword_letters, read_keywords
from securemail.deliver.target import SECUREMAIL_KEYWORD

BODY = b"From: a@x.example\r\nTo: bob@y.example\r\nSubject: Budget\r\n\r\nThe figures.\r\n"
KEY = "cd" * 32
SECURE = frozenset({SECUREMAIL_KEYWORD})


def deliver(target: MaildirTarget, keywords: frozenset[str], key: str = KEY) -> int:
    results = asyncio.run(
        target.deliver("a@x.example", ["bob@y.example"], BODY, key, keywords=keywords)
    )
    return results["bob@y.example"].code


def test_keyword_message_goes_to_cur_with_its_letter(tmp_path: Path) -> None:
    """A message with $SecureMail is in cur/ as <name>,S=<size>:2,a and the file maps a to it."""
    assert deliver(MaildirTarget(tmp_path), SECURE) == 250
    box = tmp_path / "y.example" / "bob"
    [name] = os.listdir(box / "cur")
    assert os.listdir(box / "new") == []
    size = (box / "cur" / name).stat().st_size
    assert name.endswith(f",S={size}:2,a")
    assert (box / "dovecot-keywords").read_text() == "0 $SecureMail\n"
    [message] = mailbox.Maildir(box, create=False)
    assert message["Subject"] == "Budget"


def test_unverified_delivery_has_no_keyword(tmp_path: Path) -> None:
    """Without keywords the message goes to new/ with no info suffix and no keywords file."""
    assert deliver(MaildirTarget(tmp_path), frozenset()) == 250
    box = tmp_path / "y.example" / "bob"
    [name] = os.listdir(box / "new")
    assert ":" not in name and os.listdir(box / "cur") == []
    assert not (box / "dovecot-keywords").exists()


def test_existing_keywords_keep_their_letters(tmp_path: Path) -> None:
    """Keywords another program defined keep their indices; ours takes the next free letter."""
    box = tmp_path / "y.example" / "bob"
    (box / "tmp").mkdir(parents=True)
    (box / "dovecot-keywords").write_text("0 $Junk\n1 $NonJunk\n")
    assert keyword_letters(box, ["$securemail"]) == "c"
    assert keyword_letters(box, ["$SecureMail", "$Junk"]) == "ac"  # case-insensitive match
    assert read_keywords(box) == {"$junk": 0, "$nonjunk": 1, "$securemail": 2}
    assert (box / "dovecot-keywords").read_text() == "0 $Junk\n1 $NonJunk\n2 $securemail\n"
    assert not (box / "dovecot-uidlist.lock").exists()


def test_a_full_keyword_file_gives_no_letter(tmp_path: Path) -> None:
    """With all 26 letters taken, a new keyword gets none and the message is still stored."""
    box = tmp_path / "y.example" / "bob"
    (box / "tmp").mkdir(parents=True)
    (box / "dovecot-keywords").write_text("".join(f"{i} k{i}\n" for i in range(26)))
    assert keyword_letters(box, [SECUREMAIL_KEYWORD]) == ""
    assert deliver(MaildirTarget(tmp_path), SECURE) == 250
    assert len(os.listdir(box / "new")) == 1


@pytest.mark.parametrize("bad", ["", "\\Seen", "two words", "a(b", 'quo"te', "é"])
def test_keywords_must_be_imap_atoms(tmp_path: Path, bad: str) -> None:
    """A keyword that is not an IMAP atom is a caller bug, refused before anything is written."""
    (tmp_path / "tmp").mkdir()
    with pytest.raises(ValueError, match="keyword"):
        keyword_letters(tmp_path, [bad])
    assert not (tmp_path / "dovecot-keywords").exists()


def test_keyword_delivery_is_exactly_once(tmp_path: Path) -> None:
    """Redelivering a key stores nothing more, also after a client added \\Seen to the name."""
    target = MaildirTarget(tmp_path)
    assert deliver(target, SECURE) == 250
    cur = tmp_path / "y.example" / "bob" / "cur"
    [name] = os.listdir(cur)
    assert deliver(target, SECURE) == 250 and os.listdir(cur) == [name]
    os.rename(cur / name, cur / f"{name.partition(':')[0]}:2,Sa")  # a client read it
    assert deliver(target, SECURE) == 250
    assert deliver(target, frozenset()) == 250  # nor as an unverified copy of the same key
    assert len(os.listdir(cur)) == 1 and os.listdir(cur.parent / "new") == []


def test_concurrent_keyword_deliveries_store_once(tmp_path: Path) -> None:
    """Two workers delivering one key with keywords at once leave one file and one definition."""
    target = MaildirTarget(tmp_path)

    async def both() -> None:
        await asyncio.gather(
            *(target.deliver("a@x", ["bob@y.example"], BODY, KEY, keywords=SECURE) for _ in "12")
        )

    asyncio.run(both())
    box = tmp_path / "y.example" / "bob"
    assert len(os.listdir(box / "cur")) == 1 and os.listdir(box / "tmp") == []
    assert (box / "dovecot-keywords").read_text() == "0 $SecureMail\n"


def test_a_held_lock_is_waited_for_and_a_stale_one_removed(tmp_path: Path) -> None:
    """A dovecot-uidlist.lock left by a crash long ago does not block keyword definition."""
    box = tmp_path / "y.example" / "bob"
    (box / "tmp").mkdir(parents=True)
    lock = box / "dovecot-uidlist.lock"
    lock.touch()
    os.utime(lock, (1, 1))
    assert keyword_letters(box, [SECUREMAIL_KEYWORD]) == "a"
    assert not lock.exists()
