"""The pure login rule table: every combination of service, account state, secret and TOTP."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from securemail.accounts.login import TotpCheck, decide, needs_totp
from securemail.accounts.model import Account, AccountReason, Service

BASE = Account(
    name="alice@x.nz",
    addresses=("alice@x.nz",),
    display_name="",
    quota=None,
    strong_auth_required=False,
    totp_enrolled=False,
    sole_use_acknowledged=None,
    disabled=False,
    created=datetime(2026, 1, 1, tzinfo=UTC),
)
R = AccountReason


def expected(service: Service, account: Account, app: bool, check: TotpCheck | None) -> object:
    """The contract of model.Authenticator, written out independently of decide()."""
    if account.disabled:
        return R.DISABLED
    if service is not Service.WEB:
        needs_app = account.totp_enrolled or account.strong_auth_required
        return "app-password" if app else (R.APP_PASSWORD_REQUIRED if needs_app else "password")
    if app:
        return R.BAD_CREDENTIALS
    if account.totp_enrolled:
        return {
            None: R.TOTP_REQUIRED,
            TotpCheck.MISSING: R.TOTP_REQUIRED,
            TotpCheck.INVALID: R.TOTP_INVALID,
            TotpCheck.REPLAYED: R.TOTP_REPLAYED,
            TotpCheck.OK: "password+totp",
        }[check]
    return R.STRONG_AUTH_REQUIRED if account.strong_auth_required else "password"


STATES = [
    replace(BASE, disabled=d, totp_enrolled=t, strong_auth_required=s)
    for d, t, s in itertools.product([False, True], repeat=3)
]


@pytest.mark.parametrize("service", list(Service))
@pytest.mark.parametrize("account", STATES)
def test_every_rule(service: Service, account: Account) -> None:
    """Each service, account state, kind of secret and TOTP outcome gets the contract's answer."""
    for app, check in itertools.product([False, True], [None, *TotpCheck]):
        got = decide(service, account, secret_ok=True, app_password=app, totp_check=check)
        assert got == expected(service, account, app, check), (app, check)
        wrong = decide(service, account, secret_ok=False, app_password=app, totp_check=check)
        assert wrong is R.BAD_CREDENTIALS
    assert decide(service, None, secret_ok=True, app_password=False, totp_check=None) is (
        R.BAD_CREDENTIALS
    )


def test_totp_is_checked_only_on_the_web_after_the_password() -> None:
    """The second factor is looked at only for a web login of an enrolled account with the
    right password."""
    enrolled = replace(BASE, totp_enrolled=True)
    assert needs_totp(Service.WEB, enrolled, True)
    assert not needs_totp(Service.WEB, enrolled, False)
    assert not needs_totp(Service.IMAP, enrolled, True)
    assert not needs_totp(Service.WEB, BASE, True)
    assert not needs_totp(Service.WEB, None, True)
