"""Account passwords: the argon2id hashing profile and the NIST SP 800-63B password policy.

The profile is m=19 MiB, t=2, p=1, OWASP's argon2id minimum (THREATS.md H asks for at
least that), rather than its equivalent m=46 MiB, t=1: measured with bench/login_bench.py,
46 MiB is above glibc's largest mmap threshold (32 MiB), so every verify maps fresh memory
and the kernel spends half the verify zeroing it (52 of 107 ms); 19 MiB is reused from the
heap, 45 ms per verify, 2.4 times the logins per core for the same OWASP strength. p=1
because a node verifies many logins at once on few cores; more lanes would only multiply
the CPU each login takes. Hashes made with other parameters are re-hashed at the next
login. Dovecot (libsodium) verifies these hashes with the ``{ARGON2ID}`` scheme, so an
external IMAP server can use the same hash.

Policy (NIST SP 800-63B-4 §3.1.1.2): 15 to 256 characters, no composition
rules, not the account's name or local part, not in a breached-password list. The list is
a file of passwords or of upper-case SHA-1 hex digests (with or without the ``:count``
suffix of the Have I Been Pwned downloads), read as a stream when a password is set, so a
multi-gigabyte list costs no memory.

Security: passwords are never logged, stored or put in an error detail.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher, Type

from securemail.accounts.model import AccountError, AccountReason

MIN_LENGTH = 15
MAX_LENGTH = 256
MIN_NAME_PART = 3  # shorter local parts ("jo") occur in too many good passwords to refuse
HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID)


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new account password must satisfy; ``breached`` is an optional list file."""

    breached: Path | None = None

    def check(self, password: str, name: str) -> None:
        """Refuse ``password`` for the account ``name`` with WEAK_PASSWORD and the rule broken."""
        problem = self._problem(password, name)
        if problem is not None:
            raise AccountError(AccountReason.WEAK_PASSWORD, problem)

    def _problem(self, password: str, name: str) -> str | None:
        if len(password) < MIN_LENGTH:
            return f"a password needs at least {MIN_LENGTH} characters"
        if len(password) > MAX_LENGTH:
            return f"a password may have at most {MAX_LENGTH} characters"
        if _contains_name(password, name):
            return "a password must not contain the account's name"
        if self.breached is not None and is_breached(password, self.breached):
            return "this password is in a list of breached passwords; choose another"
        return None


def _contains_name(password: str, name: str) -> bool:
    folded = password.casefold()
    local = name.partition("@")[0].casefold()
    return name.casefold() in folded or (len(local) >= MIN_NAME_PART and local in folded)


def is_breached(password: str, path: Path) -> bool:
    """Whether ``password`` (or its upper-case SHA-1 hex) is a line of the list at ``path``."""
    sha1 = hashlib.sha1(password.encode("utf-8")).hexdigest().upper().encode("ascii")  # noqa: S324 (the list's format, not a password hash)
    plain = password.encode("utf-8")
    with path.open("rb") as lines:
        for line in lines:
            entry = line.rstrip(b"\r\n")
            digest = entry.split(b":", 1)[0]
            if hmac.compare_digest(entry, plain) or digest.upper() == sha1:
                return True
    return False


def hash_password(password: str) -> str:
    """The argon2id PHC string for ``password`` under the current profile."""
    return HASHER.hash(password)
