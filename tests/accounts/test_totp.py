"""TOTP codes (RFC 6238), the accepted drift, and secrets sealed to the passphrase and account."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from securemail.accounts import totp

SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890" * 6 + b"1234",
}
# RFC 6238 Appendix B: (time, SHA-1, SHA-256, SHA-512), 8 digits
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
NOW = datetime(2026, 12, 6, 9, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_appendix_b(seconds: int, sha1: str, sha256: str, sha512: str) -> None:
    """Every test vector of RFC 6238 Appendix B comes out of the code generator."""
    step = totp.time_step(datetime.fromtimestamp(seconds, UTC))
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        secret = base64.b32encode(SEEDS[digest]).decode()
        assert totp.code_at(secret, step, digits=8, digest=digest) == expected


def test_one_step_of_drift_either_way_and_no_more() -> None:
    """Codes of the step before and after now match (with their step); two steps away do not."""
    secret = totp.new_secret()
    current = totp.time_step(NOW)
    for offset in (-1, 0, 1):
        code = totp.code_at(secret, current + offset)
        assert totp.match_step(secret, code, NOW) == current + offset
    for offset in (-2, 2):
        assert totp.match_step(secret, totp.code_at(secret, current + offset), NOW) is None
    assert totp.match_step(secret, "12345x", NOW) is None


def test_codes_match_an_authenticator_app() -> None:
    """A code pyotp's TOTP (what apps implement) shows now is accepted at the current step."""
    secret = totp.new_secret()
    assert len(base64.b32decode(secret)) == 20
    shown = pyotp.TOTP(secret).at(NOW)
    assert totp.match_step(secret, shown, NOW) == totp.time_step(NOW)
    assert totp.match_step(secret, shown, NOW + timedelta(seconds=90)) is None


def test_provisioning_uri_round_trips() -> None:
    """The otpauth URI names the issuer and account and carries the secret and parameters."""
    secret = totp.new_secret()
    parsed = pyotp.parse_uri(totp.provisioning_uri(secret, "alice@mail.example.govt.nz"))
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.secret, parsed.name, parsed.issuer) == (
        secret,
        "alice@mail.example.govt.nz",
        "SecureMail",
    )
    assert (parsed.digits, parsed.interval) == (6, 30)


def test_a_sealed_secret_opens_only_for_its_account_and_passphrase() -> None:
    """The secret comes back for the same passphrase, salt and account, and nowhere else."""
    salt = os.urandom(totp.SALT_BYTES)
    seal = totp.SecretSeal(b"passphrase", salt)
    sealed = seal.seal("JBSWY3DPEHPK3PXP", "alice@x.nz")
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert totp.SecretSeal(b"passphrase", salt).open(sealed, "alice@x.nz") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(ValueError, match="does not open"):
        seal.open(sealed, "bob@x.nz")
    with pytest.raises(ValueError, match="does not open"):
        totp.SecretSeal(b"other", salt).open(sealed, "alice@x.nz")
    with pytest.raises(ValueError, match="does not open"):
        seal.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), "alice@x.nz")
