"""What a submission says of its sender: the login used, sole use, identity verification.

A :class:`Submitted` is taken when a mailbox holder hands over a message (SMTP submission
or the webmail) and travels with the message through the queue as JSON; the provider's
gateway turns it into the signed senderAssurance attribute (:mod:`securemail.smime.assurance`)
when it protects the message. It is a snapshot: a later change to the account (sole use
withdrawn, identity re-verified) does not change what was true when the message was sent.

The login vocabulary, weakest first, is :data:`securemail.smime.assurance.LOGINS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

from securemail.accounts.model import Account, Granted
from securemail.smime.assurance import LOGINS, IdentityCheck

_LOGIN_OF_METHOD = {"password": "password", "password+totp": "password-totp"}


def login_of(granted: Granted) -> str:
    """The assurance login of a granted login (an app password says how it was made)."""
    if granted.method == "app-password":
        return "app-password-totp" if granted.app_password_under_totp else "app-password"
    return _LOGIN_OF_METHOD[granted.method]


@dataclass(frozen=True)
class Submitted:
    """How the holder of an account logged in to submit one message, and what the provider
    knows of the account at that moment."""

    account: str
    login: str
    sole_use_since: datetime | None
    identity: IdentityCheck | None

    def __post_init__(self) -> None:
        if self.login not in LOGINS:
            raise ValueError(f"login must be one of {', '.join(LOGINS)}")

    @classmethod
    def of(cls, account: Account, login: str) -> Submitted:
        return cls(account.name, login, account.sole_use_acknowledged, account.identity)

    def to_json(self) -> str:
        identity = self.identity
        return json.dumps(
            {
                "account": self.account,
                "login": self.login,
                "sole_use_since": None
                if self.sole_use_since is None
                else self.sole_use_since.isoformat(),
                "identity": None
                if identity is None
                else {
                    "level": identity.level,
                    "method": identity.method,
                    "verified_on": identity.verified_on.isoformat(),
                },
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Submitted:
        data = json.loads(text)
        since, identity = data["sole_use_since"], data["identity"]
        return cls(
            account=data["account"],
            login=data["login"],
            sole_use_since=None if since is None else datetime.fromisoformat(since),
            identity=None
            if identity is None
            else IdentityCheck(
                identity["level"], identity["method"], date.fromisoformat(identity["verified_on"])
            ),
        )
