"""The account store and service on SQLite and PostgreSQL: addresses, changes, secrets at rest."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select

from securemail.accounts.model import AccountError, AccountReason, Mailbox
from securemail.accounts.schema import account_totp
from securemail.accounts.service import APP_PASSWORD_CAP
from tests.accounts.conftest import ALICE, DOMAIN, PASSWORD, Clock, open_at

R = AccountReason


def reason(error: pytest.ExceptionInfo[AccountError]) -> AccountReason:
    return error.value.reason


def test_accounts_addresses_and_mailboxes(url: str, tmp_path: Path, clock: Clock) -> None:
    """Accounts are named by their lower-cased primary address; aliases deliver to the
    primary; addresses are unique, strictly parsed and in the node's domains."""
    with open_at(url, tmp_path / "accounts.log", clock) as accounts:
        service = accounts.service
        alice = service.add(f"Alice@{DOMAIN.upper()}", PASSWORD, display_name="Alice", quota=10**6)
        assert alice.name == ALICE and alice.addresses == (ALICE,) and alice.quota == 10**6
        service.add_alias(ALICE, f"A.Smith@{DOMAIN}")
        assert service.get(ALICE.upper()).addresses == (ALICE, f"a.smith@{DOMAIN}")
        expected = Mailbox(ALICE, ALICE, 10**6)
        assert accounts.mailboxes.mailbox_for(f"A.SMITH@{DOMAIN}") == expected
        assert accounts.mailboxes.mailbox_for(f"nobody@{DOMAIN}") is None
        for taken in (ALICE, f"a.smith@{DOMAIN}"):
            with pytest.raises(AccountError) as caught:
                service.add(taken, PASSWORD)
            assert reason(caught) is R.ADDRESS_TAKEN
        for bad in ("bob@elsewhere.govt.nz", f"Bob <bob@{DOMAIN}>", "bob", f'"b b"@{DOMAIN}'):
            with pytest.raises(AccountError) as caught:
                service.add(bad, PASSWORD)
            assert reason(caught) is R.BAD_ADDRESS, bad
        with pytest.raises(AccountError) as caught:
            service.remove_alias(ALICE, ALICE)
        assert reason(caught) is R.PRIMARY_ADDRESS
        assert service.remove_alias(ALICE, f"a.smith@{DOMAIN}").addresses == (ALICE,)
        assert [a.name for a in service.list()] == [ALICE]


def test_account_changes(url: str, tmp_path: Path, clock: Clock) -> None:
    """Quota, strong auth, disabling and the sole-use acknowledgement are stored; an
    unknown account is NO_SUCH_ACCOUNT; a weak new password is WEAK_PASSWORD."""
    with open_at(url, tmp_path / "accounts.log", clock) as accounts:
        service = accounts.service
        service.add(ALICE, PASSWORD)
        assert service.set_quota(ALICE, None).quota is None
        assert service.set_strong_auth(ALICE, True).strong_auth_required
        assert service.disable(ALICE).disabled and not service.enable(ALICE).disabled
        assert service.acknowledge_sole_use(ALICE).sole_use_acknowledged == clock.now
        with pytest.raises(AccountError) as caught:
            service.disable(f"nobody@{DOMAIN}")
        assert reason(caught) is R.NO_SUCH_ACCOUNT
        with pytest.raises(AccountError) as caught:
            service.set_password(ALICE, "alice password!")
        assert reason(caught) is R.WEAK_PASSWORD


def test_time_zone_stored_checked_and_reset(url: str, tmp_path: Path, clock: Clock) -> None:
    """An IANA zone is stored on both engines; a name the system does not know is
    BAD_TIME_ZONE and changes nothing; None returns the account to the default."""
    with open_at(url, tmp_path / "accounts.log", clock) as accounts:
        service = accounts.service
        service.add(ALICE, PASSWORD)
        assert service.get(ALICE).time_zone is None
        assert service.set_time_zone(ALICE, " Pacific/Chatham ").time_zone == "Pacific/Chatham"
        for bad in ("Mars/Olympus_Mons", "../etc/localtime", "UTC+13"):
            with pytest.raises(AccountError) as caught:
                service.set_time_zone(ALICE, bad)
            assert reason(caught) is R.BAD_TIME_ZONE
        assert service.get(ALICE).time_zone == "Pacific/Chatham"
        assert service.set_time_zone(ALICE, None).time_zone is None


def test_app_password_cap(url: str, tmp_path: Path, clock: Clock) -> None:
    """An account has at most APP_PASSWORD_CAP app passwords; revoking frees a place."""
    with open_at(url, tmp_path / "accounts.log", clock) as accounts:
        service = accounts.service
        service.add(ALICE, PASSWORD)
        ids = [service.app_password_add(ALICE, f"device {n}")[0] for n in range(APP_PASSWORD_CAP)]
        with pytest.raises(AccountError) as caught:
            service.app_password_add(ALICE, "one more")
        assert reason(caught) is R.APP_PASSWORD_LIMIT
        service.app_password_revoke(ALICE, ids[0])
        service.app_password_add(ALICE, "one more")
        with pytest.raises(AccountError) as caught:
            service.app_password_revoke(ALICE, ids[0])
        assert reason(caught) is R.NO_SUCH_APP_PASSWORD


def test_totp_secret_sealed_and_reopened(url: str, tmp_path: Path, clock: Clock) -> None:
    """The TOTP secret is not stored in clear, enrolment needs a current code, and after the
    store is reopened (same salt, same passphrase) the secret still opens."""
    log = tmp_path / "accounts.log"
    with open_at(url, log, clock) as accounts:
        accounts.service.add(ALICE, PASSWORD)
        app = pyotp.parse_uri(accounts.service.totp_begin(ALICE))
        assert isinstance(app, pyotp.TOTP)
        with accounts.engine.connect() as conn:
            sealed = conn.execute(select(account_totp.c.sealed)).scalar_one()
        assert app.secret.encode() not in sealed
        with pytest.raises(AccountError) as caught:
            accounts.service.totp_confirm(ALICE, "000000" if app.now() != "000000" else "111111")
        assert reason(caught) is R.TOTP_INVALID
        assert not accounts.service.get(ALICE).totp_enrolled
    with open_at(url, log, clock) as accounts:
        assert accounts.service.totp_confirm(ALICE, app.at(clock.now)).totp_enrolled
        with pytest.raises(AccountError) as caught:
            accounts.service.totp_confirm(ALICE, app.at(clock.now))
        assert reason(caught) is R.TOTP_NOT_PENDING
