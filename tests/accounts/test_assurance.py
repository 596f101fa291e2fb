"""What a login and the account say of a sender: the login word, app passwords made under
TOTP, the operator's identity record, and the snapshot the queue carries."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from securemail.accounts.assurance import Submitted, login_of
from securemail.accounts.model import Granted, Service
from securemail.accounts.node import Accounts
from securemail.smime.assurance import IdentityCheck
from tests.accounts.conftest import ALICE, PASSWORD, Clock
from tests.accounts.test_login import enrol, login


def test_app_passwords_remember_whether_totp_was_on(accounts: Accounts, clock: Clock) -> None:
    """An app password made before TOTP logs in as "app-password", one made after as
    "app-password-totp"; the web login with a code is "password-totp"."""
    _, before = accounts.service.app_password_add(ALICE, "old phone")
    plain = login(accounts, PASSWORD, Service.SMTP)
    assert isinstance(plain, Granted) and login_of(plain) == "password"
    app = enrol(accounts, clock)
    _, after = accounts.service.app_password_add(ALICE, "new phone")
    old, new = login(accounts, before, Service.SMTP), login(accounts, after, Service.SMTP)
    assert isinstance(old, Granted) and login_of(old) == "app-password"
    assert isinstance(new, Granted) and login_of(new) == "app-password-totp"
    assert [a.under_totp for a in accounts.service.app_passwords(ALICE)] == [False, True]
    web = login(accounts, PASSWORD, Service.WEB, totp=app.at(clock.now))
    assert isinstance(web, Granted) and login_of(web) == "password-totp"


def test_identity_is_recorded_and_withdrawn(accounts: Accounts, clock: Clock) -> None:
    """The operator's record of an identity check is on the account until withdrawn, and
    cannot be dated in the future."""
    check = IdentityCheck("level 2", "in person, passport", clock.now.date())
    assert accounts.service.set_identity(ALICE, check).identity == check
    assert accounts.service.get(ALICE).identity == check
    assert accounts.service.set_identity(ALICE, None).identity is None
    future = IdentityCheck("level 2", "in person", clock.now.date() + timedelta(days=2))
    with pytest.raises(ValueError, match="future"):
        accounts.service.set_identity(ALICE, future)


def test_the_snapshot_round_trips(accounts: Accounts, clock: Clock) -> None:
    """The submission's snapshot, as JSON in the queue, reads back as it was taken."""
    accounts.service.acknowledge_sole_use(ALICE)
    accounts.service.set_identity(ALICE, IdentityCheck("level 1", "online", date(2026, 1, 5)))
    taken = Submitted.of(accounts.service.get(ALICE), "app-password-totp")
    assert taken.sole_use_since == clock.now and taken.identity is not None
    assert Submitted.from_json(taken.to_json()) == taken
    with pytest.raises(ValueError, match="login"):
        Submitted(ALICE, "guessed", None, None)
