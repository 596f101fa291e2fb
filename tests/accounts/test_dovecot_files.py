"""Exporting the store's accounts to Dovecot: IMAP secrets, Maildirs, and the safe file writer."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from pathlib import Path

import pyotp
import pytest

from securemail.accounts.dovecot import DovecotFiles
from securemail.accounts.dovecot_files import FILE_MODE, dovecot_users, write_files
from securemail.accounts.node import Accounts, open_accounts
from securemail.config.node import Delivery, Organisation
from tests.accounts.conftest import ALICE, DOMAIN, PASSPHRASE, PASSWORD, QUICK, Clock, open_at

BOB, CAROL, DAVE = (f"{local}@{DOMAIN}" for local in ("bob", "carol", "dave"))
ELSEWHERE = "elsewhere.govt.nz"
MAIL = Path("/srv/securemail/mail")
NOGROUP = 65534
ORGS = (
    Organisation("provider", (DOMAIN,), Path("keys"), Delivery("maildir", path=MAIL)),
    Organisation("agency", (ELSEWHERE,), Path("keys"), Delivery("smtp", host="mx.agency")),
)


def _files(tag: str, slots: int = 2) -> DovecotFiles:
    return DovecotFiles(f"users {tag}\n", tuple(f"slot {n} {tag}\n" for n in range(slots)))


def test_imap_secrets_follow_the_authenticators_imap_rule(accounts: Accounts, clock: Clock) -> None:
    """The password hash is kept only where IMAP grants a password login (not with TOTP,
    strong authentication or disabled); app password hashes always, oldest first."""
    service = accounts.service
    for name in (BOB, CAROL, DAVE):
        service.add(name, PASSWORD)
    app = pyotp.parse_uri(service.totp_begin(BOB))
    assert isinstance(app, pyotp.TOTP)
    service.totp_confirm(BOB, app.at(clock.now))
    service.set_strong_auth(CAROL, True)
    service.disable(DAVE)
    _, first = service.app_password_add(BOB, "phone")
    clock.advance(1)
    _, second = service.app_password_add(BOB, "laptop")

    secrets = {item.account.name: item for item in service.imap_secrets()}

    assert list(secrets) == [ALICE, BOB, CAROL, DAVE]
    assert QUICK.verify(secrets[ALICE].password_hash or "", PASSWORD)
    assert [secrets[n].password_hash for n in (BOB, CAROL, DAVE)] == [None, None, None]
    assert secrets[DAVE].account.disabled
    bob_apps = secrets[BOB].app_password_hashes
    assert len(bob_apps) == 2
    assert QUICK.verify(bob_apps[0], first) and QUICK.verify(bob_apps[1], second)


def test_exported_accounts_are_the_stored_accounts(url: str, tmp_path: Path, clock: Clock) -> None:
    """Accounts read for an export (one query per table) equal those get() reads, aliases
    after the primary, on SQLite and PostgreSQL."""
    with open_at(url, tmp_path / "accounts.log", clock) as accounts:
        service = accounts.service
        for name in (ALICE, BOB):
            service.add(name, PASSWORD)
        service.add_alias(ALICE, f"zed@{DOMAIN}")
        service.add_alias(ALICE, f"amy@{DOMAIN}")
        service.totp_begin(BOB)  # pending, not enrolled

        exported = service.imap_secrets()
        stored = [service.get(ALICE), service.get(BOB)]

    assert [item.account for item in exported] == stored
    assert stored[0].addresses == (ALICE, f"amy@{DOMAIN}", f"zed@{DOMAIN}")
    assert exported[1].password_hash is not None  # a pending enrolment is not TOTP yet


def test_maildir_is_the_primary_address_below_its_organisations_root(
    accounts: Accounts,
) -> None:
    """Each account's Maildir is <root>/<domain>/<local> of its primary address."""
    accounts.service.add(BOB, PASSWORD)
    accounts.service.add_alias(BOB, f"robert@{DOMAIN}")

    selection = dovecot_users(accounts.service.imap_secrets(), ORGS)

    assert [(u.name, u.maildir) for u in selection.users] == [
        (ALICE, MAIL / DOMAIN / "alice"),
        (BOB, MAIL / DOMAIN / "bob"),
    ]
    assert selection.skipped == ()


def test_accounts_of_an_organisation_without_maildir_delivery_are_skipped(
    tmp_path: Path, clock: Clock
) -> None:
    """An account whose domain's organisation delivers by SMTP, or that no organisation
    has, is left out with its reason; the others are exported."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    opened = open_accounts(
        url,
        log_path=tmp_path / "accounts.log",
        passphrase=PASSPHRASE,
        domains=[DOMAIN, ELSEWHERE, "gone.nz"],
        clock=clock,
        hasher=QUICK,
    )
    with opened:
        for name in (ALICE, f"ann@{ELSEWHERE}", "old@gone.nz"):
            opened.service.add(name, PASSWORD)
        selection = dovecot_users(opened.service.imap_secrets(), ORGS)

    assert [u.name for u in selection.users] == [ALICE]
    assert selection.skipped == (
        f"ann@{ELSEWHERE}: organisation agency delivers by smtp, not to a Maildir",
        "old@gone.nz: no organisation of this node has the domain gone.nz",
    )


def test_files_are_written_with_the_texts_mode_0640_and_no_leftovers(tmp_path: Path) -> None:
    """Every file holds its text, mode 0640 whatever the umask, and no aside file stays."""
    previous = os.umask(0)
    try:
        written = write_files(tmp_path, _files("one"))
    finally:
        os.umask(previous)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwords.0", "passwords.1", "users"]
    assert (tmp_path / "users").read_text() == "users one\n"
    assert (tmp_path / "passwords.1").read_text() == "slot 1 one\n"
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE, path
    assert written.entries == (("passwords.0", 1), ("passwords.1", 1), ("users", 1))
    assert written.removed == ()


def test_files_take_the_group_of_the_directory(tmp_path: Path) -> None:
    """The files get the directory's group (Dovecot's), not the writer's."""
    if os.geteuid() != 0:
        pytest.skip("giving a file another group than one's own needs root")
    os.chown(tmp_path, -1, NOGROUP)

    write_files(tmp_path, _files("one"))

    assert {p.stat().st_gid for p in tmp_path.iterdir()} == {NOGROUP}


def test_reexport_replaces_each_file_and_dates_it_a_whole_second_later(tmp_path: Path) -> None:
    """A re-export within the same second, of the same sizes, still changes each file's
    modification time in whole seconds, so Dovecot sees it; the texts are the new ones."""
    write_files(tmp_path, _files("one"))
    before = {p.name: (p.stat().st_ino, int(p.stat().st_mtime)) for p in tmp_path.iterdir()}

    write_files(tmp_path, _files("two"))

    assert (tmp_path / "passwords.0").read_text() == "slot 0 two\n"
    assert (tmp_path / "users").read_text() == "users two\n"
    for path in tmp_path.iterdir():
        inode, seconds = before[path.name]
        assert path.stat().st_ino != inode, path  # renamed over, not written in place
        assert int(path.stat().st_mtime) >= seconds + 1, path


def test_password_files_are_replaced_before_the_users_file(tmp_path: Path) -> None:
    """When the users file cannot be replaced, the password files already hold the new
    export and the aside copy of the users file is removed."""
    write_files(tmp_path, _files("one"))
    (tmp_path / "users").unlink()
    (tmp_path / "users").mkdir()  # a rename of a file over a directory fails

    with pytest.raises(IsADirectoryError):
        write_files(tmp_path, _files("two"))

    assert (tmp_path / "passwords.0").read_text() == "slot 0 two\n"
    assert (tmp_path / "passwords.1").read_text() == "slot 1 two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwords.0", "passwords.1", "users"]


def test_slot_files_beyond_the_slots_exported_are_removed(tmp_path: Path) -> None:
    """An export with fewer slots removes the higher slot files an earlier export left."""
    write_files(tmp_path, _files("one", slots=4))
    (tmp_path / "passwords.old").write_text("not a slot\n")

    written = write_files(tmp_path, _files("two", slots=2))

    assert written.removed == ("passwords.2", "passwords.3")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["passwords.0", "passwords.1", "passwords.old", "users"]


def test_an_export_waits_for_another_holding_the_directory(tmp_path: Path) -> None:
    """While another export holds the directory's lock, nothing is written; then all is."""
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(folder, fcntl.LOCK_EX)
    writer = threading.Thread(target=write_files, args=(tmp_path, _files("one")))
    try:
        writer.start()
        time.sleep(0.2)
        assert list(tmp_path.iterdir()) == []
    finally:
        os.close(folder)  # releases the lock
        writer.join(timeout=10)
    assert (tmp_path / "users").read_text() == "users one\n"
