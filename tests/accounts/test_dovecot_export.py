"""Exporting accounts as Dovecot passwd-files: slots, refusals, and hashes Dovecot verifies."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import pytest
from argon2 import PasswordHasher

from securemail.accounts.dovecot import (
    DEFAULT_SLOTS,
    DovecotUser,
    auth_config,
    export_users,
    password_file,
)
from tests.conftest import require_tool

# Cheap parameters keep these tests fast; the PHC form is the same as with the defaults.
HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
MAIL = Path("/srv/securemail/mail")
UID, GID = 5000, 5000


def _user(
    name: str,
    password: str | None = "pw",  # noqa: S107 (a test secret)
    apps: tuple[str, ...] = (),
    *,
    disabled: bool = False,
    maildir: Path | None = None,
) -> DovecotUser:
    local, _, domain = name.lower().partition("@")
    return DovecotUser(
        name,
        maildir or MAIL / domain / local,
        None if password is None else HASHER.hash(password),
        tuple(HASHER.hash(app) for app in apps),
        disabled,
    )


def _entries(text: str) -> dict[str, list[str]]:
    """passwd-file lines by user name, split into their fields."""
    return {line.split(":")[0]: line.split(":") for line in text.splitlines()}


def test_userdb_entry_gives_uid_gid_and_maildir_as_home() -> None:
    """The users file names the Maildir owner and the Maildir, read as maildir:~."""
    files = export_users([_user("hemi@provider.nz")], uid=UID, gid=GID)

    assert files.users == (
        f"hemi@provider.nz::{UID}:{GID}::{MAIL}/provider.nz/hemi::userdb_mail=maildir:~\n"
    )


def test_password_then_app_passwords_fill_the_slots_in_order() -> None:
    """Slot 0 holds the password, the following slots one app password each, the rest are empty."""
    user = _user("hemi@provider.nz", "pw", ("app-1", "app-2"))
    files = export_users([user], uid=UID, gid=GID, slots=4)

    expected = [f"hemi@provider.nz:{{ARGON2ID}}{secret}\n" for secret in user.secrets()]
    assert list(files.passwords) == [*expected, ""]
    assert user.secrets()[0] == user.password_hash


def test_account_without_password_gets_only_its_app_passwords() -> None:
    """An account that needs app passwords for IMAP has no entry carrying its password."""
    user = _user("aroha@provider.nz", None, ("app-1",))
    files = export_users([user], uid=UID, gid=GID, slots=2)

    assert files.passwords == (f"aroha@provider.nz:{{ARGON2ID}}{user.app_password_hashes[0]}\n", "")


def test_disabled_account_gets_no_entry_anywhere() -> None:
    """A disabled account is in neither the users file nor any password slot."""
    files = export_users(
        [_user("hemi@provider.nz"), _user("gone@provider.nz", "pw", ("app",), disabled=True)],
        uid=UID,
        gid=GID,
    )

    assert "gone" not in files.users + "".join(files.passwords)
    assert list(_entries(files.users)) == ["hemi@provider.nz"]


def test_names_are_lower_cased_as_dovecot_looks_them_up() -> None:
    """Dovecot lower-cases the login name (%Lu), so the entry must be lower case."""
    files = export_users([_user("Hemi.Walker@Provider.NZ")], uid=UID, gid=GID)

    assert list(_entries(files.passwords[0])) == ["hemi.walker@provider.nz"]


@pytest.mark.parametrize(
    ("name", "maildir", "message"),
    [
        ("evil:x@provider.nz", None, "':' or a control character"),
        ("evil\nroot@provider.nz", None, "':' or a control character"),
        ("", None, "empty"),
        ("evil x@provider.nz", None, "outside auth_username_chars"),
        ("hemi@provider.nz", Path("/srv/mail:x"), "':' or a control character"),
        ("hemi@provider.nz", Path("/srv/mail\nroot::0:0::/:"), "':' or a control character"),
        ("hemi@provider.nz", Path("relative/mail"), "not an absolute path"),
    ],
)
def test_names_and_paths_that_could_break_an_entry_are_refused(
    name: str, maildir: Path | None, message: str
) -> None:
    """A field separator or line break in a name or Maildir path is a ValueError, not an entry."""
    with pytest.raises(ValueError, match=message):
        export_users([_user("ok@provider.nz"), _user(name, maildir=maildir)], uid=UID, gid=GID)


def test_hashes_other_than_argon2id_are_refused() -> None:
    """A hash that is not an argon2id PHC string (or could end a field) is refused."""
    for bad in (
        "plain-text",
        "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        HASHER.hash("x") + ":",
    ):
        user = DovecotUser("hemi@provider.nz", MAIL / "hemi", bad, (), False)
        with pytest.raises(ValueError, match="not argon2id PHC"):
            export_users([user], uid=UID, gid=GID)


def test_more_secrets_than_slots_and_duplicate_names_are_refused() -> None:
    """An account that does not fit the slots, or two names equal in lower case, are refused."""
    crowded = _user("hemi@provider.nz", "pw", ("a", "b"))
    with pytest.raises(ValueError, match="3 secrets but 2 slots"):
        export_users([crowded], uid=UID, gid=GID, slots=2)
    with pytest.raises(ValueError, match="once lower-cased"):
        export_users([_user("hemi@provider.nz"), _user("HEMI@provider.nz")], uid=UID, gid=GID)


def test_root_as_maildir_owner_is_refused() -> None:
    """Dovecot never reads mail as uid 0, so an export for root is a ValueError."""
    with pytest.raises(ValueError, match="root"):
        export_users([_user("hemi@provider.nz")], uid=0, gid=GID)


def test_auth_config_chains_one_passdb_per_slot_before_the_userdb() -> None:
    """The snippet lists every slot's file, continuing on failure, then the users file."""
    config = auth_config(PurePosixPath("/var/lib/securemail/dovecot"), 3)

    files = [f"scheme=ARGON2ID /var/lib/securemail/dovecot/{password_file(s)}" for s in range(3)]
    assert [config.index(f) for f in files] == sorted(config.index(f) for f in files)
    assert config.count("result_failure = continue") == 3
    assert config.rindex("passdb {") < config.index("args = /var/lib/securemail/dovecot/users")
    assert export_users([], uid=UID, gid=GID).passwords == ("",) * DEFAULT_SLOTS


def test_dovecot_verifies_argon2_cffi_hashes_under_the_argon2id_scheme(tmp_path: Path) -> None:
    """`doveadm pw -t` accepts a default argon2-cffi hash as {ARGON2ID} and rejects a wrong one."""
    doveadm = require_tool("doveadm")
    stored = "{ARGON2ID}" + PasswordHasher().hash("correct horse")
    empty = tmp_path / "dovecot.conf"  # not the system's configuration
    empty.touch()

    def verify(password: str) -> subprocess.CompletedProcess[str]:
        command = [doveadm, "-c", str(empty), "pw", "-t", stored, "-p", password]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    right, wrong = verify("correct horse"), verify("wrong horse")
    assert right.returncode == 0 and "(verified)" in right.stdout, right.stderr
    assert wrong.returncode != 0 and "mismatch" in wrong.stderr


CONTRIB = Path(__file__).parents[2] / "contrib" / "dovecot" / "securemail.conf"


def test_contrib_config_ends_with_the_generated_auth_chain() -> None:
    """contrib/dovecot/securemail.conf carries auth_config's text for the default slots."""
    expected = auth_config(PurePosixPath("/var/lib/securemail/dovecot"), DEFAULT_SLOTS)

    assert CONTRIB.read_text().endswith("\n" + expected)


def test_contrib_config_is_accepted_by_doveconf(tmp_path: Path) -> None:
    """Dovecot's own parser accepts the contrib config (certificate paths pointed at tmp)."""
    doveconf = require_tool("doveconf")
    text = CONTRIB.read_text()
    for name in ("imap.pem", "imap.key"):
        (tmp_path / name).touch()
        text = text.replace(f"/etc/securemail/tls/{name}", str(tmp_path / name))
    (tmp_path / "dovecot.conf").write_text(text)

    command = [doveconf, "-c", str(tmp_path / "dovecot.conf"), "-n"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "ssl = required" in done.stdout and "protocols = imap" in done.stdout
