"""The kit's cases: which apply to a member, and that each forgery breaks exactly one check;
every requirement id the kit reports is one the profile defines."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from securemail.conformance import cases
from securemail.conformance.forgery import tamper_signed
from securemail.smime import ProtectOptions, Reason, SmimeError, unprotect
from securemail.smime.decrypt import decrypt
from securemail.smime.limits import Limits
from securemail.smime.mime import decode_body, header_fields, split_header
from tests.conftest import MESSAGE, NOW, Pki

ROOT = Path(__file__).resolve().parents[2]


def test_downgrade_cases_apply_only_where_the_entry_makes_them_one(pki: Pki) -> None:
    """To a member listing aes256-gcm and sealed-for, the CBC case is a downgrade (SM-DIR-5)
    and the unsealed case is sent; to a legacy member neither; revoked only with a signer."""
    tester = cases.Tester("conformance", "conformance.example.nz", pki.ministry.signer)
    member = _Entry("agency", ("aes256-gcm", "aes256-cbc", "sealed-for"))
    names = {c.name: c for c in cases.build_cases(tester, member, "a@agency.govt.nz",  # type: ignore[arg-type]
                                            pki.agency.certificate, NOW)}  # fmt: skip
    assert "SM-DIR-5" in names["downgrade-cbc"].requirements and "unsealed" in names
    assert "revoked" not in names
    legacy = _Entry("agency", ("aes256-cbc",))
    revoking = dataclasses.replace(tester, revoked=pki.revoked.signer)
    names = {c.name: c for c in cases.build_cases(revoking, legacy, "a@agency.govt.nz",  # type: ignore[arg-type]
                                            pki.agency.certificate, NOW)}  # fmt: skip
    assert "valid-cbc" in names and "unsealed" not in names
    assert names["revoked"].requirements[0] == "SM-DIR-3"


@dataclasses.dataclass(frozen=True)
class _Entry:
    """The two fields of a directory entry the cases read."""

    org_id: str
    capabilities: tuple[str, ...]


def test_tampered_signed_decrypts_but_fails_its_signature(pki: Pki) -> None:
    """The signature forgery decrypts with a good GCM tag; only the signature check fails."""
    marker = b"figures are attached"
    wire = tamper_signed(MESSAGE, pki.agency.signer, pki.ministry.certificate, marker, now=NOW,
                         options=ProtectOptions())  # fmt: skip
    block, body = split_header(wire, Limits())
    decrypt(decode_body(header_fields(block, Limits()), body), [pki.ministry.recipient])
    with pytest.raises(SmimeError) as refused:
        unprotect(wire, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW)
    assert refused.value.reason is Reason.SIGNATURE_INVALID


def test_every_requirement_the_kit_reports_is_in_the_profile() -> None:
    """Each SM-… id in the kit's code is a row of profile §14."""
    profile = (ROOT / "docs" / "profile.md").read_text()
    defined = set(re.findall(r"^\| (SM-[A-Z]+-\d+) \|", profile, re.MULTILINE))
    source = "".join(p.read_text() for p in (ROOT / "src/securemail/conformance").glob("*.py"))
    used = set(re.findall(r'"(SM-[A-Z]+-\d+)"', source))
    assert used and used <= defined, used - defined
