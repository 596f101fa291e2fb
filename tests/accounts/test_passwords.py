"""The password policy (NIST SP 800-63B), the breached list, the hashing profile, app passwords."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from argon2 import extract_parameters

from securemail.accounts import app_passwords
from securemail.accounts.model import AccountError, AccountReason
from securemail.accounts.passwords import HASHER, PasswordPolicy, hash_password

NAME = "alice.smith@mail.example.govt.nz"
GOOD = "grass under the window frame"


def refusal(policy: PasswordPolicy, password: str) -> str:
    with pytest.raises(AccountError) as caught:
        policy.check(password, NAME)
    assert caught.value.reason is AccountReason.WEAK_PASSWORD
    return caught.value.detail


def test_length_limits_without_composition_rules() -> None:
    """15 to 256 characters pass whatever they are made of; 14 and 257 are refused."""
    policy = PasswordPolicy()
    for password in ("a" * 15, "a" * 256, "aaaaaaaaaaaaaaaaaaaa", "ünïcödé pässwörd"):
        policy.check(password, NAME)
    assert "at least 15" in refusal(policy, "a" * 14)
    assert "at most 256" in refusal(policy, "a" * 257)


def test_name_and_local_part_are_refused() -> None:
    """A password equal to or containing the name or its local part is refused, any case."""
    policy = PasswordPolicy()
    assert "name" in refusal(policy, NAME)
    assert "name" in refusal(policy, "my ALICE.SMITH password")
    policy.check("jo is fine as a password here", "jo@mail.example.govt.nz")


def test_breached_list_of_passwords_or_hibp_sha1(tmp_path: Path) -> None:
    """A password in the list, as itself or as its HIBP SHA-1 line, is refused; others pass."""
    plain = "breached but very long password"
    hashed = "another breached long password"
    digest = hashlib.sha1(hashed.encode()).hexdigest().upper()  # noqa: S324 (the HIBP format)
    listing = tmp_path / "breached.txt"
    listing.write_bytes(
        f"0000000000000000000000000000000000000000:3\r\n{plain}\n{digest}:42\n".encode()
    )
    policy = PasswordPolicy(breached=listing)
    assert "breached" in refusal(policy, plain)
    assert "breached" in refusal(policy, hashed)
    policy.check(GOOD, NAME)


def test_hash_profile_meets_owasp_minimum() -> None:
    """New hashes are argon2id with at least OWASP's m=19 MiB, t=2, p=1 equivalent."""
    params = extract_parameters(hash_password(GOOD))
    assert params.type.name == "ID" and params.parallelism == 1
    assert params.memory_cost * params.time_cost >= 19_456 * 2
    assert params.memory_cost >= 19_456
    assert HASHER.verify(hash_password(GOOD), GOOD)


def test_app_passwords_have_a_public_id_and_over_100_bits() -> None:
    """Generated app passwords have the documented shape, unique secrets, and > 100 bits."""
    drawn = {app_passwords.generate() for _ in range(200)}
    assert len(drawn) == 200
    for ident, secret in drawn:
        assert app_passwords.public_id(secret) == ident
        assert not set(secret) & set("ilo01")
    secret_chars = app_passwords.GROUPS * app_passwords.GROUP_LENGTH
    assert secret_chars * math.log2(len(app_passwords.ALPHABET)) > 100
    assert app_passwords.public_id(GOOD) is None
    assert app_passwords.public_id(secret.upper()) is None
