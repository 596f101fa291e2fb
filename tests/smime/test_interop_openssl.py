"""Interoperability with OpenSSL's `openssl cms`, run as the real binary, in both directions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from securemail.smime import (
    ProtectOptions,
    Reason,
    ReceiptBasis,
    ReceiptRequest,
    SecurityLabel,
    SmimeError,
    make_receipt,
    protect,
    receipt_entity,
    sign_message,
    unprotect,
    verify_receipt,
)
from securemail.smime.mime import canonicalize
from tests.conftest import NOW, Org, Pki, require_tool

pytestmark = pytest.mark.interop
ATTIME = str(int(NOW.timestamp()))


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


@pytest.fixture
def files(pki: Pki, tmp_path: Path) -> Path:
    """The federation anchor, CRL and every member's certificate and key as PEM files."""
    pki.write_ca(tmp_path)
    for org in (pki.agency, pki.ministry, pki.council):
        org.write(tmp_path)
    return tmp_path


def run(openssl: str, *args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    """Run `openssl` and return stdout; fail the test with its stderr if it fails."""
    done = subprocess.run(
        [openssl, *args], cwd=cwd, input=stdin, capture_output=True, timeout=300, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def cert(org: Org) -> str:
    return f"{org.domain}.pem"


def key(org: Org) -> str:
    return f"{org.domain}.key"


def openssl_sign(openssl: str, files: Path, org: Org, message: bytes, *extra: str) -> bytes:
    (files / "in.eml").write_bytes(message)
    return run(
        openssl,
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-md",
        "sha256",
        "-in",
        "in.eml",
        "-signer",
        cert(org),
        "-inkey",
        key(org),
        *extra,
        cwd=files,
    )


def openssl_encrypt(openssl: str, files: Path, org: Org, entity: bytes, *cipher: str) -> bytes:
    """`openssl cms -encrypt` with cipher[0] as the cipher and the rest as -keyopt pairs."""
    (files / "entity.eml").write_bytes(entity)
    return run(
        openssl,
        "cms",
        "-encrypt",
        "-binary",
        "-in",
        "entity.eml",
        cipher[0],
        "-recip",
        cert(org),
        *cipher[1:],
        cwd=files,
    )


@pytest.mark.parametrize(
    "cipher",
    [
        ("-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep"),
        ("-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"),
        ("-aes-128-gcm",),
        ("-aes-256-cbc",),
        ("-aes-128-cbc", "-keyopt", "rsa_padding_mode:oaep"),
    ],
)
def test_openssl_signed_and_encrypted_opens_in_ours(
    openssl: str, files: Path, pki: Pki, message: bytes, cipher: tuple[str, ...]
) -> None:
    """`openssl cms -sign | -encrypt` (GCM and CBC, OAEP and PKCS#1 v1.5) decrypts and verifies."""
    signed = openssl_sign(openssl, files, pki.agency, message)
    sent = openssl_encrypt(openssl, files, pki.ministry, signed, *cipher)
    result = unprotect(
        sent,
        identities=[pki.ministry.recipient],
        trust=pki.trust(),
        now=NOW,
        require_encryption=True,
    )
    assert result.content == message
    assert result.signature.signer == pki.agency.certificate
    assert result.encryption is not None
    expected = cipher[0].lstrip("-").replace("-", "", 1)  # "-aes-256-gcm" -> "aes256-gcm"
    assert result.encryption.content_encryption == expected
    oaep = "rsa_padding_mode:oaep" in cipher
    assert result.encryption.key_management.startswith("rsa-oaep" if oaep else "rsa-pkcs1v15")


def test_openssl_ecdh_to_ec_gateway_opens_in_ours(
    openssl: str, files: Path, pki: Pki, message: bytes
) -> None:
    """OpenSSL's ECDH key agreement (SHA-256 KDF) to an EC gateway certificate decrypts in ours."""
    signed = openssl_sign(openssl, files, pki.agency, message)
    sent = openssl_encrypt(
        openssl, files, pki.council, signed, "-aes-256-gcm", "-keyopt", "ecdh_kdf_md:sha256"
    )
    result = unprotect(sent, identities=[pki.council.recipient], trust=pki.trust(), now=NOW)
    assert result.content == message
    assert result.encryption is not None
    assert result.encryption.key_management.startswith("ecdh-sha256kdf")


def test_openssl_detached_multipart_signed_verifies_in_ours(
    openssl: str, files: Path, pki: Pki, message: bytes
) -> None:
    """A clear-signed multipart/signed message from OpenSSL verifies; content is the signed part."""
    entity = b"Content-Type: text/plain\r\n\r\nClear-signed body.\r\n"
    (files / "part.txt").write_bytes(entity)
    signed = run(
        openssl,
        "cms",
        "-sign",
        "-in",
        "part.txt",
        "-signer",
        cert(pki.agency),
        "-inkey",
        key(pki.agency),
        cwd=files,
    )
    result = unprotect(signed, identities=[], trust=pki.trust(), now=NOW)
    assert result.content == canonicalize(entity)
    assert result.encryption is None


def test_openssl_signed_only_refused_when_encryption_required(
    openssl: str, files: Path, pki: Pki, message: bytes
) -> None:
    """A signed-only message is refused with not-encrypted where the caller requires encryption."""
    signed = openssl_sign(openssl, files, pki.agency, message)
    with pytest.raises(SmimeError) as refused:
        unprotect(
            signed,
            identities=[pki.ministry.recipient],
            trust=pki.trust(),
            now=NOW,
            require_encryption=True,
        )
    assert refused.value.reason is Reason.NOT_ENCRYPTED


@pytest.mark.parametrize(
    "options",
    [
        ProtectOptions(),
        ProtectOptions(inner_encoding="binary"),
        ProtectOptions(cipher="aes256-cbc"),
        ProtectOptions(rsa_padding="pss", digest="sha384"),
    ],
    ids=["default", "gcm-binary", "cbc", "pss-sha384"],
)
def test_ours_opens_in_openssl(
    openssl: str, files: Path, pki: Pki, message: bytes, options: ProtectOptions
) -> None:
    """Our protected message decrypts with `openssl cms -decrypt` and verifies with `-verify`."""
    sent = protect(message, pki.agency.signer, [pki.ministry.certificate], now=NOW, options=options)
    (files / "sent.eml").write_bytes(sent.message)
    inner = run(
        openssl,
        "cms",
        "-decrypt",
        "-in",
        "sent.eml",
        "-recip",
        cert(pki.ministry),
        "-inkey",
        key(pki.ministry),
        cwd=files,
    )
    if options.inner_encoding == "base64":
        verify_args = ("-in", "-")  # OpenSSL's S/MIME reader takes the base64 entity as is
        stdin = inner
    else:
        verify_args = ("-inform", "DER")  # binary inner entity: OpenSSL reads its DER body
        stdin = inner.split(b"\r\n\r\n", 1)[1]
    # OpenSSL's cms command finds CRLs in its CA file
    (files / "ca-crl.pem").write_bytes(
        (files / "ca.pem").read_bytes() + (files / "crl.pem").read_bytes()
    )
    recovered = run(
        openssl,
        "cms",
        "-verify",
        *verify_args,
        "-CAfile",
        "ca-crl.pem",
        "-crl_check",
        "-attime",
        ATTIME,
        "-purpose",
        "smimesign",
        cwd=files,
        stdin=stdin,
    )
    assert recovered == message


def test_ours_to_ec_gateway_opens_in_openssl(
    openssl: str, files: Path, pki: Pki, message: bytes
) -> None:
    """Our ECDH (RFC 5753) encryption to an EC certificate decrypts in OpenSSL."""
    sent = protect(message, pki.council.signer, [pki.council.certificate], now=NOW)
    (files / "sent.eml").write_bytes(sent.message)
    inner = run(
        openssl,
        "cms",
        "-decrypt",
        "-in",
        "sent.eml",
        "-recip",
        cert(pki.council),
        "-inkey",
        key(pki.council),
        cwd=files,
    )
    recovered = run(
        openssl,
        "cms",
        "-verify",
        "-CAfile",
        "ca.pem",
        "-attime",
        ATTIME,
        cwd=files,
        stdin=inner,  # the default base64 inner entity, read by OpenSSL's S/MIME reader
    )
    assert recovered == message


def test_ours_label_and_receipt_request_read_by_openssl(
    openssl: str, files: Path, pki: Pki, message: bytes
) -> None:
    """OpenSSL parses our receipt request (receipts-to address) and the label's policy OID."""
    options = ProtectOptions(
        label=SecurityLabel("IN-CONFIDENCE", "PERSONAL"),
        receipt_request=ReceiptRequest(b"cid-42", ("gw@agency.govt.nz",)),
    )
    signed = sign_message(message, pki.agency.signer, now=NOW, options=options)
    (files / "signed.eml").write_bytes(signed.message)
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-in",
            "signed.eml",
            "-CAfile",
            "ca.pem",
            "-attime",
            ATTIME,
            "-receipt_request_print",
            "-out",
            "/dev/null",
        ],
        cwd=files,
        capture_output=True,
        timeout=300,
        check=True,
    )
    assert b"email:gw@agency.govt.nz" in done.stdout + done.stderr
    printed = run(openssl, "cms", "-cmsout", "-print", "-in", "signed.eml", cwd=files)
    assert options.label is not None
    assert options.label.policy.encode() in printed
    assert b"PERSONAL" in printed


def test_our_receipt_passes_openssl_verify_receipt(
    openssl: str, files: Path, pki: Pki, message: bytes
) -> None:
    """`openssl cms -verify_receipt` accepts our signed receipt for OpenSSL's own original."""
    original = openssl_sign(
        openssl,
        files,
        pki.agency,
        message,
        "-receipt_request_all",
        "-receipt_request_to",
        "gw@agency.govt.nz",
    )
    (files / "original.eml").write_bytes(original)
    received = unprotect(original, identities=[], trust=pki.trust(), now=NOW)
    (files / "receipt.eml").write_bytes(
        receipt_entity(make_receipt(received.signature, pki.ministry.signer, now=NOW))
    )
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify_receipt",
            "receipt.eml",
            "-in",
            "original.eml",
            "-CAfile",
            "ca.pem",
            "-attime",
            ATTIME,
        ],
        cwd=files,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def test_openssl_receipt_verifies_in_ours(
    openssl: str, files: Path, pki: Pki, message: bytes
) -> None:
    """A receipt from `openssl cms -sign_receipt` for our message verifies against our basis."""
    request = ReceiptRequest(b"cid-7", ("gw@agency.govt.nz",))
    sent = sign_message(
        message, pki.agency.signer, now=NOW, options=ProtectOptions(receipt_request=request)
    )
    (files / "sent.eml").write_bytes(sent.message)
    receipt = run(
        openssl,
        "cms",
        "-sign_receipt",
        "-in",
        "sent.eml",
        "-signer",
        cert(pki.ministry),
        "-inkey",
        key(pki.ministry),
        cwd=files,
    )
    assert sent.receipt_basis is not None
    verified = verify_receipt(receipt, sent.receipt_basis, trust=pki.trust(), now=NOW)
    assert verified.signer == pki.ministry.certificate
    assert verified.content_identifier == b"cid-7"
    other = sign_message(
        message.replace(b"test-1", b"test-2"),
        pki.agency.signer,
        now=NOW,
        options=ProtectOptions(receipt_request=request),
    )
    assert other.receipt_basis is not None
    with pytest.raises(SmimeError) as refused:
        verify_receipt(receipt, other.receipt_basis, trust=pki.trust(), now=NOW)
    assert refused.value.reason is Reason.RECEIPT_MISMATCH
    assert ReceiptBasis.from_json(sent.receipt_basis.to_json()) == sent.receipt_basis
