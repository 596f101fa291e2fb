"""Time-based one-time passwords (RFC 6238) and the sealing of their secrets at rest.

Codes are HOTP (RFC 4226) over the 30-second time step, SHA-1, 6 digits, the profile
every authenticator app implements; a code from the step before or after the current one
is accepted (RFC 6238 §5.2, one step of clock drift). :func:`match_step` returns the step a
code belongs to so the caller can refuse any step at or before the last one accepted
(§5.2: a verifier must not accept the same code twice).

Secrets are sealed with AES-256-GCM under a key derived with scrypt from the node
passphrase and a random salt kept in the database; the account name is the associated
data, so a sealed secret copied to another account's row does not open.

Security: pure functions of their arguments (``now`` is passed in); secrets and codes are
never logged.
"""

from __future__ import annotations

import hmac
import os
from datetime import datetime
from urllib.parse import quote

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
ISSUER = "SecureMail"
SALT_BYTES = 16
_NONCE_BYTES = 12
_SCRYPT_N = 2**15  # RFC 7914 §2 interactive figure: ~32 MiB and ~0.1 s, once per open
_AAD = b"securemail totp secret v1\x00"


def new_secret() -> str:
    """A fresh base32 secret of 160 bits (RFC 4226 §4 recommends 160)."""
    return pyotp.random_base32(32)


def time_step(now: datetime) -> int:
    """The RFC 6238 time step T of ``now`` (seconds since the epoch over 30)."""
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, step: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """The code for time step ``step`` (``digits`` and ``digest`` only for test vectors)."""
    return pyotp.HOTP(secret, digits=digits, digest=digest).at(step)


def match_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step within one step of ``now`` whose code is ``code``, or None."""
    current = time_step(now)
    candidate = code.strip().encode("ascii", "replace")
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step).encode("ascii"), candidate):
            return step
    return None


def provisioning_uri(secret: str, name: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans (Key Uri Format, Google)."""
    label = quote(f"{ISSUER}:{name}", safe="@:")
    return (
        f"otpauth://totp/{label}?secret={secret}&issuer={ISSUER}"
        f"&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    )


class SecretSeal:
    """Seals and opens TOTP secrets under the node passphrase (one scrypt run per instance)."""

    def __init__(self, passphrase: bytes, salt: bytes) -> None:
        if not passphrase:
            raise ValueError("the node passphrase is empty")
        kdf = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1)
        self._aead = AESGCM(kdf.derive(passphrase))

    def seal(self, secret: str, name: str) -> bytes:
        """``nonce || ciphertext`` of ``secret``, bound to the account ``name``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode("ascii"), _AAD + name.encode())

    def open(self, sealed: bytes, name: str) -> str:
        """The secret ``seal`` sealed for ``name``; ValueError if it was not, or was altered."""
        nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            plain = self._aead.decrypt(nonce, ciphertext, _AAD + name.encode())
        except InvalidTag:
            raise ValueError("the TOTP secret does not open: other passphrase or account") from None
        return plain.decode("ascii")
