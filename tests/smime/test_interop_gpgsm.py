"""Interoperability with GnuPG's independent CMS implementation, ``gpgsm``, run as a binary.

gpgsm plays the ministry's gateway: it holds the ministry's key (imported as legacy PKCS#12)
and trusts the test federation root. We are the agency. Both directions are exercised:
gpgsm verifies and decrypts what :mod:`securemail.smime` writes, and ``unprotect`` verifies
and decrypts what gpgsm writes (BER: indefinite lengths, constructed OCTET STRINGs).

gpgsm 2.2 has no AES-GCM, no RSA-OAEP and no PBES2 PKCS#12, so the common ground is
EnvelopedData with AES-CBC, RSA PKCS#1 v1.5 key transport and RSA PKCS#1 v1.5 / SHA-256
signatures. gpgsm never touches the network here: CRL checks and dirmngr are disabled, and
its clock is pinned to the test time so certificate validity does not depend on the day.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Literal

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from securemail.smime import ProtectOptions, Reason, SmimeError, protect, sign_message, unprotect
from securemail.smime.algorithms import CipherName
from securemail.smime.sign import sign
from tests.conftest import NOW, Org, Pki, require_tool

pytestmark = pytest.mark.interop

TIMEOUT = 300  # stops a hang; a loaded CI machine can be slow
# Protects the throwaway PKCS#12 made at test time and the key inside gpg-agent; not a secret.
P12_PASSPHRASE = b"interop-test-only"
# gpgsm's clock, pinned to the test time the certificates were issued at (not the real day).
FAKED_TIME = NOW.strftime("%Y%m%dT%H%M%S")
CRLF = b"\r\n"


def fingerprint(cert: x509.Certificate) -> str:
    """gpgsm's name for a certificate: its SHA-1 fingerprint, upper-case hex."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - gpgsm's key id


@dataclass(frozen=True)
class Gpgsm:
    """A gpgsm with its own GNUPGHOME, holding the ministry's key and trusting the test CA."""

    binary: str
    home: Path
    work: Path
    peer: Org  # whose private key gpgsm holds

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home), "LC_ALL": "C", "LANGUAGE": "C"}

    def run(
        self, *args: str | Path, passphrase: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run gpgsm in batch mode with status lines on stdout; fail showing its stderr."""
        command = [
            self.binary,
            "--batch",
            "--yes",
            "--no-tty",
            "--status-fd",
            "1",
            "--faked-system-time",
            FAKED_TIME,
            "--pinentry-mode",
            "loopback",
            *(["--passphrase-fd", "0"] if passphrase else []),
            *(str(a) for a in args),
        ]
        result = subprocess.run(
            command,
            input=P12_PASSPHRASE + b"\n" if passphrase else b"",
            capture_output=True,
            timeout=TIMEOUT,
            env=self.env,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout.decode(errors='replace')}\n"
                f"stderr:\n{result.stderr.decode(errors='replace')}"
            )
        return result

    def write(self, name: str, data: bytes) -> Path:
        path = self.work / name
        path.write_bytes(data)
        return path

    def verify(self, signature: bytes, content: bytes | None = None) -> tuple[list[str], bytes]:
        """Verify with gpgsm (detached if ``content``); return (status lines, signed content)."""
        sig_path = self.write("verify-in.p7s", signature)
        out = self.work / "verify-out"
        out.unlink(missing_ok=True)
        if content is None:
            result = self.run("--output", out, "--verify", sig_path)
            return status_lines(result), out.read_bytes()
        result = self.run("--verify", sig_path, self.write("verify-content", content))
        return status_lines(result), content

    def sign(self, content: bytes, *, detached: bool = False) -> bytes:
        """Sign ``content`` as the peer (SHA-256, RSA PKCS#1 v1.5); return the CMS BER."""
        out = self.work / "sign-out.p7s"
        result = self.run(
            "--local-user",
            fingerprint(self.peer.certificate),
            "--include-certs",
            "-1",
            "--digest-algo",
            "SHA256",
            "--output",
            out,
            "--detach-sign" if detached else "--sign",
            self.write("sign-in", content),
            passphrase=True,
        )
        assert status(result, "SIG_CREATED")[0] == ("D" if detached else "S")
        return out.read_bytes()

    def encrypt(self, content: bytes, to: x509.Certificate, cipher: str | None) -> bytes:
        """Encrypt ``content`` to ``to`` (optionally forcing ``--cipher-algo``); return BER."""
        out = self.work / "encrypt-out.p7m"
        self.run(
            *(["--cipher-algo", cipher] if cipher else []),
            "--recipient",
            fingerprint(to),
            "--output",
            out,
            "--encrypt",
            self.write("encrypt-in", content),
        )
        return out.read_bytes()

    def decrypt(self, envelope: bytes) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
        """Decrypt with the peer's key, verbosely; return (gpgsm's result, plaintext)."""
        out = self.work / "decrypt-out"
        result = self.run(
            "--verbose",
            "--output",
            out,
            "--decrypt",
            self.write("decrypt-in.p7m", envelope),
            passphrase=True,
        )
        return result, out.read_bytes()


def status_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    """gpgsm's machine-readable ``[GNUPG:]`` status lines, prefix removed."""
    prefix = "[GNUPG:] "
    lines = result.stdout.decode("utf-8", "replace").splitlines()
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


def status(result: subprocess.CompletedProcess[bytes], keyword: str) -> list[str]:
    """The arguments of the only status line ``keyword``."""
    hits = [line.split()[1:] for line in status_lines(result) if line.split()[0] == keyword]
    assert len(hits) == 1, f"{keyword} in {status_lines(result)}"
    return hits[0]


def assert_good_signature(lines: list[str], signer: x509.Certificate) -> None:
    """gpgsm found exactly one signature, good, by ``signer``, with a trusted chain."""
    keywords = [line.split()[0] for line in lines]
    assert keywords.count("NEWSIG") == 1, lines
    good = [line.split() for line in lines if line.startswith("GOODSIG ")]
    assert len(good) == 1 and good[0][1] == fingerprint(signer), lines
    assert any(line.startswith(f"VALIDSIG {fingerprint(signer)} ") for line in lines), lines
    assert "TRUST_FULLY" in keywords, lines
    assert not {"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"} & set(keywords), lines


@pytest.fixture(scope="module")
def gpgsm(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpgsm]:
    """A fresh GNUPGHOME: the test root trusted, agency's certificate and ministry's key."""
    binary = require_tool("gpgsm")
    gpgconf = require_tool("gpgconf")
    base = tmp_path_factory.mktemp("gpgsm")
    home = base / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    work = base / "work"
    work.mkdir()
    ca_fpr = pki.ca.certificate.fingerprint(hashes.SHA1())  # noqa: S303 - trustlist format
    (home / "trustlist.txt").write_text(f"{ca_fpr.hex(':').upper()} S relax\n")
    (home / "gpgsm.conf").write_text("disable-crl-checks\ndisable-policy-checks\ndisable-dirmngr\n")
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    tool = Gpgsm(binary, home, work, pki.ministry)
    try:
        _import_keys(tool, pki)
        yield tool
    finally:
        subprocess.run(
            [gpgconf, "--kill", "all"],
            env=tool.env,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )


def _import_keys(tool: Gpgsm, pki: Pki) -> None:
    """Import the root, the agency's certificate, and the ministry's key and certificate."""
    legacy = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - all gpgsm 2.2 reads
        .build(P12_PASSPHRASE)
    )
    p12 = pkcs12.serialize_key_and_certificates(
        b"ministry gateway",
        pki.ministry.issued.private_key,
        pki.ministry.certificate,
        [pki.ca.certificate],
        legacy,
    )
    result = tool.run(
        "--import",
        tool.write("ca.pem", pki.ca.certificate_pem()),
        tool.write("agency.pem", pki.agency.issued.certificate_pem()),
    )
    assert status(result, "IMPORT_RES")[:3] == ["2", "0", "2"]  # processed, no user id, new
    result = tool.run("--import", tool.write("ministry.p12", p12), passphrase=True)
    secret = tool.run("--with-colons", "--list-secret-keys")
    assert fingerprint(pki.ministry.certificate) in secret.stdout.decode(), secret.stdout
    assert "IMPORT_OK" in " ".join(status_lines(result))


def split_entity(data: bytes) -> tuple[Message, bytes]:
    """A MIME entity's header (parsed by the standard library) and its raw body."""
    head, separator, body = data.partition(CRLF + CRLF)
    assert separator, "no empty line after the header"
    return BytesHeaderParser().parsebytes(head + CRLF + CRLF), body


def cms_of(entity: Message, body: bytes, smime_type: str) -> bytes:
    """The CMS bytes of an application/pkcs7-mime entity of ``smime_type``."""
    assert entity.get_content_type() == "application/pkcs7-mime"
    assert str(entity.get_param("smime-type")).lower() == smime_type.lower()
    encoding = str(entity.get("Content-Transfer-Encoding", "7bit")).lower()
    if encoding == "base64":
        return base64.b64decode(body)
    assert encoding == "binary"
    return body


def pkcs7_mime(smime_type: str, data: bytes, header: bytes = b"") -> bytes:
    """Wrap CMS ``data`` as an application/pkcs7-mime entity, base64 in 76-character lines."""
    return (
        header
        + b"Content-Type: application/pkcs7-mime; smime-type="
        + smime_type.encode("ascii")
        + b'; name="smime.p7m"'
        + CRLF
        + b"Content-Transfer-Encoding: base64"
        + CRLF
        + b'Content-Disposition: attachment; filename="smime.p7m"'
        + CRLF
        + CRLF
        + base64.encodebytes(data).replace(b"\n", CRLF)
    )


def routing_header(message: bytes) -> bytes:
    """The From/To/Subject/Date/Message-ID lines of ``message``, plus MIME-Version."""
    head = message.partition(CRLF + CRLF)[0]
    keep = (b"From:", b"To:", b"Subject:", b"Date:", b"Message-ID:")
    lines = [line for line in head.split(CRLF) if line.startswith(keep)]
    return CRLF.join([*lines, b"MIME-Version: 1.0"]) + CRLF


def flip_bit(data: bytes, needle: bytes) -> bytes:
    """``data`` with the lowest bit of the last byte of the only occurrence of ``needle``."""
    assert data.count(needle) == 1
    at = data.index(needle) + len(needle) - 1
    return data[:at] + bytes((data[at] ^ 1,)) + data[at + 1 :]


# --- gpgsm reads what we write -------------------------------------------------------------


@pytest.mark.parametrize("signer", ["agency", "council"])  # RSA-2048 and ECDSA P-256
def test_gpgsm_verifies_our_opaque_signed_data(
    gpgsm: Gpgsm, pki: Pki, message: bytes, signer: str
) -> None:
    """gpgsm accepts our DER SignedData (opaque) as a good, trusted signature by its signer."""
    org: Org = getattr(pki, signer)
    signed = sign(message, org.signer, now=NOW).der.join()
    lines, content = gpgsm.verify(signed)
    assert_good_signature(lines, org.certificate)
    assert content == message


def test_gpgsm_verifies_our_detached_signature(gpgsm: Gpgsm, pki: Pki, message: bytes) -> None:
    """gpgsm accepts our detached SignedData over content given to it separately."""
    signed = sign(message, pki.agency.signer, now=NOW, detached=True).der.join()
    lines, _ = gpgsm.verify(signed, message)
    assert_good_signature(lines, pki.agency.certificate)


def test_gpgsm_verifies_our_signed_message(gpgsm: Gpgsm, pki: Pki, message: bytes) -> None:
    """gpgsm verifies the CMS inside our sign_message S/MIME output and recovers the message."""
    lf_message = message.replace(CRLF, b"\n")
    smime = sign_message(lf_message, pki.agency.signer, now=NOW).message
    header, body = split_entity(smime)
    assert header["Subject"] == "Budget figures for review"
    lines, content = gpgsm.verify(cms_of(header, body, "signed-data"))
    assert_good_signature(lines, pki.agency.certificate)
    assert content == message  # the CRLF-canonical form is what was signed


# gpgsm --verbose names the content cipher with libgcrypt's names
GPGSM_CIPHER_NAMES = {"aes256-cbc": "AES256.CBC", "aes128-cbc": "AES.CBC"}


@pytest.mark.parametrize(
    ("cipher", "inner_encoding"), [("aes256-cbc", "binary"), ("aes128-cbc", "base64")]
)
def test_gpgsm_decrypts_our_legacy_message(
    gpgsm: Gpgsm,
    pki: Pki,
    message: bytes,
    cipher: CipherName,
    inner_encoding: Literal["binary", "base64"],
) -> None:
    """gpgsm decrypts our AES-CBC EnvelopedData and verifies the SignedData entity inside."""
    options = ProtectOptions(cipher=cipher, inner_encoding=inner_encoding)
    protected = protect(
        message, pki.agency.signer, [pki.ministry.certificate], now=NOW, options=options
    )
    outer, body = split_entity(protected.message)
    assert outer["Subject"] == "SecureMail message"
    result, inner = gpgsm.decrypt(cms_of(outer, body, "enveloped-data"))
    assert status(result, "ENC_TO")[0] == fingerprint(pki.ministry.certificate)[-16:]
    assert "DECRYPTION_OKAY" in status_lines(result)
    assert (
        f"gpgsm: {GPGSM_CIPHER_NAMES[cipher]} encrypted data" in result.stderr.decode().splitlines()
    )
    inner_header, inner_body = split_entity(inner)
    assert inner_header["Content-Transfer-Encoding"] == inner_encoding
    lines, content = gpgsm.verify(cms_of(inner_header, inner_body, "signed-data"))
    assert_good_signature(lines, pki.agency.certificate)
    assert content == message


def test_gpgsm_refuses_our_tampered_signature(gpgsm: Gpgsm, pki: Pki, message: bytes) -> None:
    """gpgsm reports BADSIG and fails when one bit of our signed content is flipped."""
    signed = sign(message, pki.agency.signer, now=NOW).der.join()
    tampered = flip_bit(signed, b"The figures are attached.")
    result = gpgsm.run("--verify", gpgsm.write("tampered.p7m", tampered), check=False)
    assert result.returncode != 0
    keywords = [line.split()[0] for line in status_lines(result)]
    assert "BADSIG" in keywords, status_lines(result)
    assert "GOODSIG" not in keywords


# --- we read what gpgsm writes -------------------------------------------------------------


def test_we_verify_gpgsm_opaque_signature(gpgsm: Gpgsm, pki: Pki, message: bytes) -> None:
    """unprotect verifies gpgsm's BER opaque SignedData and names the ministry as signer."""
    signed = gpgsm.sign(message)
    assert signed.startswith(b"\x30\x80")  # BER, indefinite length
    smime = pkcs7_mime("signed-data", signed, routing_header(message))
    result = unprotect(smime, identities=[pki.agency.recipient], trust=pki.trust(), now=NOW)
    assert result.content == message
    assert result.signature.signer == pki.ministry.certificate
    assert result.signature.signature_algorithm == "rsa-pkcs1v15-sha256"
    assert result.path.anchor == pki.ca.certificate
    assert result.encryption is None


def test_we_verify_gpgsm_multipart_signed(gpgsm: Gpgsm, pki: Pki, message: bytes) -> None:
    """unprotect verifies a multipart/signed message around gpgsm's detached signature."""
    part = b"Content-Type: text/plain; charset=utf-8" + CRLF + CRLF + b"Figures attached." + CRLF
    signature = gpgsm.sign(part, detached=True)
    boundary = b"----=_gpgsm_interop_boundary"
    smime = (
        routing_header(message)
        + b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
        + CRLF
        + b' micalg=sha-256; boundary="'
        + boundary
        + b'"'
        + CRLF
        + CRLF
        + b"This is an S/MIME signed message."
        + CRLF
        + b"--"
        + boundary
        + CRLF
        + part
        + CRLF
        + b"--"
        + boundary
        + CRLF
        + b'Content-Type: application/pkcs7-signature; name="smime.p7s"'
        + CRLF
        + b"Content-Transfer-Encoding: base64"
        + CRLF
        + b'Content-Disposition: attachment; filename="smime.p7s"'
        + CRLF
        + CRLF
        + base64.encodebytes(signature).replace(b"\n", CRLF)
        + CRLF
        + b"--"
        + boundary
        + b"--"
        + CRLF
    )
    result = unprotect(smime, identities=[pki.agency.recipient], trust=pki.trust(), now=NOW)
    assert result.content == part
    assert result.signature.signer == pki.ministry.certificate
    assert result.encryption is None


@pytest.mark.parametrize(
    ("cipher_algo", "expected"),
    [("AES256", "aes256-cbc"), ("AES", "aes128-cbc"), (None, "aes128-cbc")],
)
def test_we_unprotect_gpgsm_signed_and_encrypted(
    gpgsm: Gpgsm, pki: Pki, message: bytes, cipher_algo: str | None, expected: str
) -> None:
    """unprotect decrypts gpgsm's BER EnvelopedData to us and verifies the signature inside."""
    inner = pkcs7_mime("signed-data", gpgsm.sign(message))
    envelope = gpgsm.encrypt(inner, pki.agency.certificate, cipher_algo)
    assert envelope.startswith(b"\x30\x80")  # BER, indefinite length
    smime = pkcs7_mime("enveloped-data", envelope, routing_header(message))
    result = unprotect(
        smime,
        identities=[pki.council.recipient, pki.agency.recipient],
        trust=pki.trust(),
        now=NOW,
        require_encryption=True,
    )
    assert result.content == message
    assert result.signature.signer == pki.ministry.certificate
    assert result.encryption is not None
    assert result.encryption.content_encryption == expected
    assert result.encryption.key_management == "rsa-pkcs1v15"
    assert result.encryption.recipient == pki.agency.certificate


def test_we_refuse_gpgsm_signature_with_flipped_bit(gpgsm: Gpgsm, pki: Pki, message: bytes) -> None:
    """unprotect refuses gpgsm's signed message with one content bit flipped: signature-invalid."""
    signed = flip_bit(gpgsm.sign(message), b"The figures are attached.")
    smime = pkcs7_mime("signed-data", signed, routing_header(message))
    with pytest.raises(SmimeError) as caught:
        unprotect(smime, identities=[pki.agency.recipient], trust=pki.trust(), now=NOW)
    assert caught.value.reason is Reason.SIGNATURE_INVALID


def test_we_refuse_tampered_content_inside_gpgsm_encryption(
    gpgsm: Gpgsm, pki: Pki, message: bytes
) -> None:
    """A flipped bit in gpgsm's signed content inside CBC is refused; one code hides the cause.

    Under CBC every refusal after decryption is decrypt-failed (no oracle for a malleating
    sender); the log detail still names the failed signature.
    """
    signed = flip_bit(gpgsm.sign(message), b"The figures are attached.")
    envelope = gpgsm.encrypt(pkcs7_mime("signed-data", signed), pki.agency.certificate, "AES256")
    smime = pkcs7_mime("enveloped-data", envelope, routing_header(message))
    with pytest.raises(SmimeError) as caught:
        unprotect(smime, identities=[pki.agency.recipient], trust=pki.trust(), now=NOW)
    assert caught.value.reason is Reason.DECRYPT_FAILED
    assert "signature-invalid" in caught.value.detail


def test_we_refuse_gpgsm_ciphertext_with_flipped_bit(
    gpgsm: Gpgsm, pki: Pki, message: bytes
) -> None:
    """A flipped bit in gpgsm's ciphertext breaks the CBC padding: decrypt-failed, no plaintext."""
    inner = pkcs7_mime("signed-data", gpgsm.sign(message))
    envelope = gpgsm.encrypt(inner, pki.agency.certificate, "AES256")
    ciphertext = _ciphertext(envelope)
    # The bit flipped in block n-2 lands in the padding byte of the last block.
    tampered = flip_bit(envelope, ciphertext[-32:-16])
    smime = pkcs7_mime("enveloped-data", tampered, routing_header(message))
    with pytest.raises(SmimeError) as caught:
        unprotect(smime, identities=[pki.agency.recipient], trust=pki.trust(), now=NOW)
    assert caught.value.reason is Reason.DECRYPT_FAILED


def _ciphertext(envelope: bytes) -> bytes:
    info = cms.ContentInfo.load(envelope)
    return bytes(info["content"]["encrypted_content_info"]["encrypted_content"].native)
