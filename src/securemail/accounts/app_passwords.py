"""App passwords: generated secrets a mail client uses instead of the account password.

An app password reads ``iiii-sssss-sssss-sssss-sssss-sssss``: lower-case letters and digits
without the look-alikes (no i, l, o, 0, 1). The first group is a public id, stored in clear
to pick the one row to verify, so a login costs one argon2id verify however many app
passwords an account has; the other 25 characters are the secret (25 x log2(31) = 124
bits). The whole string is what is hashed, so Dovecot verifies the same hash with the
password the client sends.

Security: the secret is shown once, at creation, and stored only as its argon2id hash.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
ID_LENGTH = 4
GROUPS = 5
GROUP_LENGTH = 5
_SHAPE = re.compile(
    rf"([{ALPHABET}]{{{ID_LENGTH}}})(?:-[{ALPHABET}]{{{GROUP_LENGTH}}}){{{GROUPS}}}"
)


def generate() -> tuple[str, str]:
    """A new app password: (public id, whole password)."""
    ident = _draw(ID_LENGTH)
    groups = [_draw(GROUP_LENGTH) for _ in range(GROUPS)]
    return ident, "-".join([ident, *groups])


def public_id(secret: str) -> str | None:
    """The id of ``secret`` if it has the shape of an app password, else None."""
    match = _SHAPE.fullmatch(secret)
    return None if match is None else match.group(1)


def _draw(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))
