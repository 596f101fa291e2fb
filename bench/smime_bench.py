"""Throughput of ``protect`` / ``unprotect`` on one core, against the bare primitives.

Run from the repository root::

    python bench/smime_bench.py                   # full run (about 90 s)
    python bench/smime_bench.py --quick           # smoke run (10-15 s)
    python bench/smime_bench.py --markdown        # Markdown tables, for docs/performance.md
    python bench/smime_bench.py --sizes 64k,10m
    python bench/smime_bench.py --malloc-no-trim  # glibc keeps freed memory (see the doc)

For each message size (a realistic RFC 5322 message, CRLF line ends: a text body at 4 KiB,
a short text part plus a base64 attachment above that) it measures, single-threaded:

- ``protect`` (default options: RSA-2048 PKCS#1 v1.5 SHA-256 signature, AES-256-GCM with
  RSA-OAEP-SHA256 key transport, outer base64 in 76-character lines) and a CMS-only variant
  (``sign.sign`` + ``encrypt.encrypt`` + join, no MIME and no base64);
- ``unprotect`` (decrypt, verify, chain validation against a TrustStore holding a CRL; the
  store caches validated paths, as it does in a running gateway) and a CMS-only variant
  (``decrypt.decrypt`` + ``verify.verify_signed_data`` + ``TrustStore.validate``);
- the bare-primitives reference with ``cryptography`` / ``hashlib`` directly, interleaved
  with the above in every round: one RSA-2048 private-key operation + SHA-256 of the
  message + AES-256-GCM of the message;
- ``openssl cms`` pipelines (sign | encrypt, decrypt | verify) as subprocess wall time,
  process start-up included.

Every figure is the median over several rounds; a round runs a function for a bounded time
(or up to a cap on iterations) and takes the mean. The ratio is the median of the per-round
ratios ours / bare, so drift on a noisy machine affects both sides of each ratio alike.
At 64 KiB and at the largest size a stage breakdown times the library calls that protect
and unprotect make, each on the data it sees at that size, with minor page faults per call.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import gc
import hashlib
import os
import platform
import random
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cryptography
import pybase64
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers import algorithms as ciphers
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securemail.pki.authority import Issued, issue, make_crl, make_root_ca, private_key_pem
from securemail.smime import (
    ProtectOptions,
    RecipientIdentity,
    SignerIdentity,
    TrustStore,
    asn1,
    attributes,
    decrypt,
    der,
    encrypt,
    limits,
    mime,
    protect,
    sign,
    unprotect,
    verify,
)

KIB = 1024
MIB = 1024 * KIB
DEFAULT_SIZES = (4 * KIB, 64 * KIB, 1 * MIB, 10 * MIB)
TARGETS = {64 * KIB: 2.0, 10 * MIB: 1.5}  # protect/bare and unprotect/bare must stay within
SHA256 = hashes.SHA256()
OAEP = padding.OAEP(padding.MGF1(SHA256), SHA256, None)

Fn = Callable[[], object]


@dataclass(frozen=True)
class Settings:
    rounds: int  # rounds per measurement; the median is reported
    round_seconds: float  # time budget of one round
    max_iterations: int  # ... or this many calls, whichever comes first
    min_iterations: int
    stage_round_seconds: float
    openssl_runs: int
    # perf_counter: wall time. thread_time: this thread's CPU time, which leaves out the
    # time other processes held the pinned core (a shared machine under load).
    clock: Callable[[], float] = time.perf_counter


FULL = Settings(
    rounds=7,
    round_seconds=0.25,
    max_iterations=1000,
    min_iterations=2,
    stage_round_seconds=0.1,
    openssl_runs=7,
)
QUICK = Settings(
    rounds=3,
    round_seconds=0.03,
    max_iterations=100,
    min_iterations=1,
    stage_round_seconds=0.02,
    openssl_runs=2,
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measurement


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_round(fn: Fn, settings: Settings, budget: float) -> tuple[float, float]:
    """Seconds and minor page faults per call of ``fn``, run for ``budget`` seconds or up to
    the iteration cap. A page fault is fresh memory the kernel had to map and zero."""
    gc.collect()
    count = 0
    faults = minor_faults()
    start = settings.clock()
    deadline = start + budget
    while True:
        fn()
        count += 1
        now = settings.clock()
        if count >= settings.min_iterations and (
            now >= deadline or count >= settings.max_iterations
        ):
            return (now - start) / count, (minor_faults() - faults) / count


@dataclass(frozen=True)
class Timings:
    seconds: list[list[float]]  # per function, per round: seconds per call
    faults: list[list[float]]  # per function, per round: minor page faults per call


def interleaved(fns: Sequence[Fn], settings: Settings, budget: float) -> Timings:
    """Measure every function in every round; rounds interleave all the functions."""
    for fn in fns:  # warm-up
        fn()
        fn()
    timings = Timings([[] for _ in fns], [[] for _ in fns])
    for r in range(settings.rounds):
        order = [(r + i) % len(fns) for i in range(len(fns))]  # rotate who goes first
        for i in order:
            seconds, faults = time_round(fns[i], settings, budget)
            timings.seconds[i].append(seconds)
            timings.faults[i].append(faults)
    return timings


@dataclass(frozen=True)
class Ratio:
    seconds: float  # median seconds per call, ours
    bare: float  # median seconds per call, reference
    ratio: float  # median of per-round ratios
    low: float  # smallest per-round ratio
    high: float  # largest per-round ratio


def ratio(ours: list[float], bare: list[float]) -> Ratio:
    per_round = [o / b for o, b in zip(ours, bare, strict=True)]
    return Ratio(
        statistics.median(ours),
        statistics.median(bare),
        statistics.median(per_round),
        min(per_round),
        max(per_round),
    )


# --------------------------------------------------------------------------- test material


@dataclass(frozen=True)
class Material:
    """An in-memory federation: sender, recipient, and a trust store with a CRL."""

    now: datetime
    ca: Issued
    sender: Issued
    recipient: Issued
    crl: x509.CertificateRevocationList
    trust: TrustStore

    @property
    def signer(self) -> SignerIdentity:
        return SignerIdentity(self.sender.certificate, self.sender.private_key)

    @property
    def identity(self) -> RecipientIdentity:
        return RecipientIdentity(self.recipient.certificate, self.recipient.private_key)

    def rsa_key(self, issued: Issued) -> rsa.RSAPrivateKey:
        key = issued.private_key
        assert isinstance(key, rsa.RSAPrivateKey)
        return key


def make_material() -> Material:
    now = datetime.now(UTC)
    ca = make_root_ca("SecureMail Benchmark Federation", now=now)

    def gateway(domain: str) -> Issued:
        return issue(
            ca,
            f"SecureMail gateway {domain}",
            now=now,
            domains=[domain],
            emails=[f"gateway@{domain}"],
        )

    sender = gateway("agency.govt.nz")
    recipient = gateway("ministry.govt.nz")
    revoked = gateway("revoked.example.nz")
    crl = make_crl(ca, [revoked.certificate], now=now)
    trust = TrustStore([ca.certificate], [crl])
    return Material(now, ca, sender, recipient, crl, trust)


_PROSE = (
    "kia ora the budget figures for the ministry are attached please review the draft "
    "cabinet paper before the select committee hearing on Thursday whānau Māori regional "
    "council consultation submissions timeline appendix revised estimates agency"
)
WORDS = _PROSE.split()


def _text(rng: random.Random, size: int) -> bytes:
    """Exactly ``size`` bytes (at least 2) of CRLF text lines of at most 72 characters."""
    lines: list[bytes] = []
    total = 0
    while True:
        words: list[str] = []
        while len(" ".join(words)) < 60:
            words.append(rng.choice(WORDS))
        line = " ".join(words)[:72].encode("utf-8") + mime.CRLF
        if total + len(line) > size - 2:
            break
        lines.append(line)
        total += len(line)
    if size - total == 1:  # no room for a filler line: give the last line's bytes back
        total -= len(lines.pop())
    filler = b"-" * (size - total - 2) + mime.CRLF
    return b"".join(lines) + filler


def make_message(size: int, seed: int = 1) -> bytes:
    """A realistic RFC 5322 message whose body is ``size`` bytes, CRLF throughout."""
    rng = random.Random(seed)  # noqa: S311 - reproducible filler, not a secret
    header = (
        b"Received: from mail.agency.govt.nz (mail.agency.govt.nz [192.0.2.10])\r\n"
        b"\tby gateway.agency.govt.nz with ESMTPS id 4Fq1; Sun, 29 Nov 2026 12:00:01 +1300\r\n"
        b"From: Alice Example <alice@agency.govt.nz>\r\n"
        b"To: Bob Example <bob@ministry.govt.nz>\r\n"
        b"Cc: records@ministry.govt.nz\r\n"
        b"Subject: Budget figures for review\r\n"
        b"Date: Sun, 29 Nov 2026 12:00:00 +1300\r\n"
        b"Message-ID: <bench-%d@agency.govt.nz>\r\n"
        b"MIME-Version: 1.0\r\n" % size
    )
    if size <= 16 * KIB:
        header += b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        body = _text(rng, size)
    else:
        boundary = b"=_securemail_bench_0"
        header += b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n'
        open_text = (
            b"--" + boundary + b"\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        )
        open_attachment = (
            b"\r\n--" + boundary + b"\r\n"
            b'Content-Type: application/pdf; name="figures.pdf"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="figures.pdf"\r\n\r\n'
        )
        close = b"--" + boundary + b"--\r\n"
        room = size - len(open_text) - 2048 - len(open_attachment) - len(close)
        lines = room // 78  # 57 bytes make one 76-character line plus CRLF
        attachment = mime.encode_base64(rng.randbytes(lines * 57))
        text = _text(rng, 2048 + room - len(attachment))
        body = open_text + text + open_attachment + attachment + close
    assert len(body) == size, (len(body), size)
    message = header + mime.CRLF + body
    assert mime.canonicalize(message) is message  # already canonical
    return message


# --------------------------------------------------------------------------- what is timed


def bare_protect(message: bytes, key: rsa.RSAPrivateKey) -> Fn:
    """RSA-2048 sign of a SHA-256 digest + SHA-256 of the message + AES-256-GCM of it."""
    cek = AESGCM.generate_key(256)

    def run() -> object:
        digest = hashlib.sha256(message).digest()
        key.sign(digest, padding.PKCS1v15(), utils.Prehashed(SHA256))
        return AESGCM(cek).encrypt(os.urandom(12), message, None)

    return run


def bare_unprotect(message: bytes, key: rsa.RSAPrivateKey) -> Fn:
    """RSA-2048 OAEP decrypt + AES-256-GCM decrypt of the message + SHA-256 of it."""
    cek = AESGCM.generate_key(256)
    nonce = os.urandom(12)
    wrapped = key.public_key().encrypt(cek, OAEP)
    ciphertext = AESGCM(cek).encrypt(nonce, message, None)

    def run() -> object:
        plaintext = AESGCM(key.decrypt(wrapped, OAEP)).decrypt(nonce, ciphertext, None)
        return hashlib.sha256(plaintext).digest()

    return run


@dataclass(frozen=True)
class Workload:
    """The functions measured at one message size (all checked once for correctness)."""

    message: bytes
    protect: Fn
    protect_cms: Fn
    bare_protect: Fn
    unprotect: Fn
    unprotect_cms: Fn
    bare_unprotect: Fn


def make_workload(material: Material, message: bytes) -> Workload:
    signer, identity, trust, now = material.signer, material.identity, material.trust, material.now
    recipients = [material.recipient.certificate]

    def run_protect() -> bytes:  # as the gateway calls it: its queue holds CRLF-normalised mail
        return protect(message, signer, recipients, now=now, canonical=True).message

    def run_protect_cms() -> bytes:
        signed = sign.sign(message, signer, now=now)
        return encrypt.encrypt(signed.der, recipients).join()

    protected = run_protect()
    enveloped = run_protect_cms()

    def run_unprotect() -> bytes:
        return unprotect(protected, identities=[identity], trust=trust, now=now).content

    def run_unprotect_cms() -> bytes:
        signed_der, _ = decrypt.decrypt(enveloped, [identity])
        content, signature = verify.verify_signed_data(signed_der)
        others = [c for c in signature.certificates if c != signature.signer]
        trust.validate(signature.signer, now=now, intermediates=others)
        return content

    if run_unprotect() != message or run_unprotect_cms() != message:
        raise RuntimeError("round trip did not return the original message")
    return Workload(
        message,
        run_protect,
        run_protect_cms,
        bare_protect(message, material.rsa_key(material.sender)),
        run_unprotect,
        run_unprotect_cms,
        bare_unprotect(message, material.rsa_key(material.recipient)),
    )


# --------------------------------------------------------------------------- openssl cms


@dataclass
class OpenSsl:
    """``openssl cms`` pipelines on files in a temporary directory."""

    binary: str
    directory: Path
    material: Material
    paths: dict[str, Path] = field(default_factory=dict)

    def write_keys(self) -> None:
        m = self.material
        for name, issued in (("sender", m.sender), ("recipient", m.recipient)):
            self.paths[f"{name}.pem"] = self._write(f"{name}.pem", issued.certificate_pem())
            self.paths[f"{name}.key"] = self._write(
                f"{name}.key", private_key_pem(issued.private_key, None)
            )
        # -CAfile loads CRLs from the same PEM file; -crl_check then requires one
        anchors = m.ca.certificate_pem() + m.crl.public_bytes(serialization.Encoding.PEM)
        self.paths["ca.pem"] = self._write("ca.pem", anchors)

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def _pipeline(self, first: list[str], second: list[str]) -> float:
        start = time.perf_counter()
        one = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        two = subprocess.Popen(
            second, stdin=one.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert one.stdout is not None
        one.stdout.close()  # so that one gets SIGPIPE if two exits
        _, error_two = two.communicate()
        _, error_one = one.communicate()
        elapsed = time.perf_counter() - start
        if one.returncode or two.returncode:
            raise RuntimeError(f"openssl failed: {error_one!r} {error_two!r}")
        return elapsed

    def measure(self, message: bytes, runs: int) -> tuple[float, float]:
        """Median seconds for sign|encrypt and decrypt|verify of ``message``."""
        p, o = self.paths, self.binary
        source = self._write("message.eml", message)
        encrypted = self.directory / "encrypted.eml"
        verified = self.directory / "verified.eml"
        sign_cmd = [o, "cms", "-sign", "-nodetach", "-binary", "-md", "sha256", "-in", str(source)]
        sign_cmd += ["-signer", str(p["sender.pem"]), "-inkey", str(p["sender.key"])]
        encrypt_cmd = [o, "cms", "-encrypt", "-binary", "-aes-256-gcm"]
        encrypt_cmd += ["-recip", str(p["recipient.pem"]), "-keyopt", "rsa_padding_mode:oaep"]
        encrypt_cmd += ["-keyopt", "rsa_oaep_md:sha256", "-out", str(encrypted)]
        decrypt_cmd = [o, "cms", "-decrypt", "-in", str(encrypted)]
        decrypt_cmd += ["-recip", str(p["recipient.pem"]), "-inkey", str(p["recipient.key"])]
        verify_cmd = [o, "cms", "-verify", "-CAfile", str(p["ca.pem"]), "-crl_check"]
        verify_cmd += ["-purpose", "smimesign", "-out", str(verified)]
        protect_times, unprotect_times = [], []
        for run in range(runs + 1):  # the first run is a warm-up and a correctness check
            protect_times.append(self._pipeline(sign_cmd, encrypt_cmd))
            unprotect_times.append(self._pipeline(decrypt_cmd, verify_cmd))
            if run == 0 and verified.read_bytes() != message:
                raise RuntimeError("openssl decrypt | verify did not return the message")
        return statistics.median(protect_times[1:]), statistics.median(unprotect_times[1:])

    def startup(self, runs: int) -> float:
        """Median wall time of ``openssl version``: process start-up alone."""
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([self.binary, "version"], check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


# --------------------------------------------------------------------------- stage breakdown


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Fn
    parent: str | None = None  # a sub-stage ("of which"); not added to the sum
    extra: bool = False  # shown for comparison only; not part of the operation


def protect_stages(material: Material, message: bytes) -> tuple[Fn, Fn, list[Stage]]:
    """``protect`` as the calls it makes, each on the data it sees at this size."""
    signer, now = material.signer, material.now
    cert = material.recipient.certificate
    key = material.rsa_key(material.sender)
    bounds = limits.Limits()
    signed = sign.sign(message, signer, now=now)
    binary = ProtectOptions().inner_encoding == "binary"  # the default, as protect sees it
    inner_body = signed.der.parts if binary else [mime.encode_base64(signed.der.join())]
    inner = der.Chunks([mime.entity_header("signed-data", binary=binary), mime.CRLF, *inner_body])
    envelope = encrypt.encrypt(inner, [cert])
    envelope_der = envelope.join()
    wrapped = pybase64.encodebytes(envelope_der)
    body = mime.encode_base64(envelope_der)
    outer = protect(message, signer, [cert], now=now).message
    outer_header = outer[: outer.index(b"\r\n\r\n") + 4]
    cek, nonce = os.urandom(32), os.urandom(12)

    def gcm() -> object:  # as encrypt._auth_enveloped does it
        encryptor = Cipher(ciphers.AES(cek), modes.GCM(nonce)).encryptor()
        encrypted = [encryptor.update(p) for p in inner.parts]
        encrypted.append(encryptor.finalize())
        return encrypted

    sign_name = "sign.sign (SignedData)"
    encrypt_name = "encrypt.encrypt (AuthEnvelopedData)"
    stages = [
        Stage(
            "mime.canonicalize: line-end check (skipped with canonical=True)",
            lambda: mime.canonicalize(message),
            extra=True,
        ),
        Stage(
            "header split + parse (split_header + header_fields)",
            lambda: mime.header_fields(mime.split_header(message, bounds)[0], bounds),
        ),
        Stage(sign_name, lambda: sign.sign(message, signer, now=now)),
        Stage("SHA-256 of the message", lambda: sign.digest_content(message, "sha256"), sign_name),
        Stage(
            "RSA-2048 PKCS#1 v1.5 signature",
            lambda: key.sign(signed.signed_attributes, padding.PKCS1v15(), SHA256),
            sign_name,
        ),
        *(
            []
            if binary
            else [
                Stage(
                    "inner entity in base64 (join + mime.encode_base64)",
                    lambda: mime.encode_base64(signed.der.join()),
                )
            ]
        ),
        Stage(encrypt_name, lambda: encrypt.encrypt(inner, [cert])),
        Stage("AES-256-GCM over the inner entity", gcm, encrypt_name),
        Stage(
            "RSA-OAEP key transport (recipient_info)",
            lambda: encrypt.recipient_info(cert, cek, oaep=True),
            encrypt_name,
        ),
        Stage("join the DER chunks (one copy)", envelope.join),
        Stage(
            "base64 in 76-char lines (pybase64.encodebytes)",
            lambda: pybase64.encodebytes(envelope_der),
        ),
        Stage("LF to CRLF (bytes.replace)", lambda: wrapped.replace(b"\n", mime.CRLF)),
        Stage("outer header + body (one copy)", lambda: outer_header + body),
        Stage(
            "pybase64.b64encode, no line breaks",
            lambda: pybase64.b64encode(envelope_der),
            extra=True,
        ),
    ]

    def whole() -> object:
        return protect(message, signer, [cert], now=now, canonical=True)

    return whole, bare_protect(message, key), stages


def unprotect_stages(material: Material, message: bytes) -> tuple[Fn, Fn, list[Stage]]:
    """``unprotect`` as the calls it makes, each on the data it sees at this size."""
    signer, identity, trust, now = (
        material.signer,
        material.identity,
        material.trust,
        material.now,
    )
    key = material.rsa_key(material.recipient)
    bounds = limits.Limits()
    outer = protect(message, signer, [material.recipient.certificate], now=now).message
    _, outer_body = mime.split_header(outer, bounds)
    envelope_der = mime.read_entity(outer, bounds).der
    inner, _ = decrypt.decrypt(envelope_der, [identity])
    signed_der = mime.read_entity(inner, bounds).der
    content, signature = verify.verify_signed_data(signed_der)
    public = signature.signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    signed_attributes = attributes.index_attributes(signature.signed_attributes)
    signer_der = signature.signer.public_bytes(serialization.Encoding.DER)

    envelope = cms.ContentInfo.load(envelope_der)["content"]
    encrypted_key = bytes(envelope["recipient_infos"][0].chosen["encrypted_key"].native)
    encrypted_info = envelope["auth_encrypted_content_info"]
    ciphertext = bytes(encrypted_info["encrypted_content"].native)
    parameters = encrypted_info["content_encryption_algorithm"]["parameters"]
    nonce = bytes(asn1.GCMParameters.load(parameters.dump())["aes_nonce"].native)
    tag = bytes(envelope["mac"].native)
    cek = key.decrypt(encrypted_key, OAEP)

    def gcm() -> object:  # as decrypt._open_gcm does it
        decryptor = Cipher(ciphers.AES(cek), modes.GCM(nonce, tag, min_tag_length=16)).decryptor()
        decryptor.authenticate_additional_data(b"")
        plaintext = decryptor.update(ciphertext)
        decryptor.finalize()
        return plaintext

    def shape_checks() -> object:  # unprotect checks each DER once, and peeks at both types
        limits.check_der(envelope_der, bounds)
        limits.check_der(signed_der, bounds)
        verify.content_type_of(envelope_der)
        return verify.content_type_of(signed_der)

    def read_outer() -> object:  # unprotect: Limits.check_size, then mime.read_entity
        bounds.check_size(outer)
        return mime.read_entity(outer, bounds)

    def cold_trust() -> object:
        store = TrustStore([material.ca.certificate], [material.crl])
        return store.validate(signature.signer, now=now)

    read_name = "read the outer entity (check_size + mime.read_entity)"
    decrypt_name = "decrypt.decrypt"
    verify_name = "verify.verify_signed_data"
    stages = [
        Stage(read_name, read_outer),
        Stage(
            "base64 decode (pybase64.b64decode)", lambda: mime.decode_base64(outer_body), read_name
        ),
        Stage(
            "split_header (header CRLF check, body slice copy)",
            lambda: mime.split_header(outer, bounds),
            read_name,
        ),
        Stage("DER shape checks (check_der x2, content_type_of x2)", shape_checks),
        Stage(decrypt_name, lambda: decrypt.decrypt(envelope_der, [identity])),
        Stage("RSA-2048 OAEP decrypt", lambda: key.decrypt(encrypted_key, OAEP), decrypt_name),
        Stage("AES-256-GCM decrypt", gcm, decrypt_name),
        Stage("read the inner entity (copies the DER)", lambda: mime.read_entity(inner, bounds)),
        Stage(verify_name, lambda: verify.verify_signed_data(signed_der)),
        Stage(
            "SHA-256 of the content", lambda: sign.digest_content(content, "sha256"), verify_name
        ),
        Stage(
            "RSA-2048 signature verify",
            lambda: public.verify(
                signature.signature_value, signature.signed_attributes, padding.PKCS1v15(), SHA256
            ),
            verify_name,
        ),
        Stage(
            "attributes.check_signing_certificate",
            lambda: attributes.check_signing_certificate(signed_attributes, signer_der),
            verify_name,
        ),
        Stage(
            "TrustStore.validate (cached path)",
            lambda: trust.validate(signature.signer, now=now),
        ),
        Stage("TrustStore.validate, cold (new store)", cold_trust, extra=True),
    ]

    def whole() -> object:
        return unprotect(outer, identities=[identity], trust=trust, now=now)

    return whole, bare_unprotect(message, key), stages


@dataclass(frozen=True)
class Breakdown:
    title: str
    rows: list[list[str]]


def breakdown(
    title: str, whole: Fn, bare: Fn, stages: list[Stage], settings: Settings
) -> Breakdown:
    fns = [whole, bare, *(s.fn for s in stages)]
    timings = interleaved(fns, settings, settings.stage_round_seconds)
    times = timings.seconds
    faults = [statistics.median(f) for f in timings.faults]
    total, reference = statistics.median(times[0]), statistics.median(times[1])
    medians = {s.name: statistics.median(t) for s, t in zip(stages, times[2:], strict=True)}
    faulted = {s.name: f for s, f in zip(stages, faults[2:], strict=True)}

    def row(name: str, seconds: float, fault_count: float | None = None) -> list[str]:
        shown = "" if fault_count is None else f"{fault_count:,.0f}"
        return [name, f"{seconds * 1e3:.2f}", f"{100 * seconds / total:.0f}%", shown]

    rows: list[list[str]] = []
    top = [s for s in stages if s.parent is None and not s.extra]
    for stage in top:
        rows.append(row(stage.name, medians[stage.name], faulted[stage.name]))
        children = [s for s in stages if s.parent == stage.name]
        for child in children:
            rows.append(row(f"  of which {child.name}", medians[child.name], faulted[child.name]))
        if children:
            rest = medians[stage.name] - sum(medians[c.name] for c in children)
            rows.append(row("  of which parsing, framing, copies (remainder)", rest))
    covered = sum(medians[s.name] for s in top)
    rows.append(row("sum of the stages above", covered))
    rows.append(row("whole call minus the sum", total - covered))
    rows.append(row("**whole call, measured in the same rounds**", total, faults[0]))
    rows.append(row("bare primitives reference (same rounds)", reference, faults[1]))
    for stage in stages:
        if stage.extra:
            rows.append(
                row(f"not in the call: {stage.name}", medians[stage.name], faulted[stage.name])
            )
    return Breakdown(title, rows)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Row:
    size: int
    operation: str
    result: Ratio
    official: bool  # a target row (protect, unprotect); CMS-only rows are informational
    openssl: float | None


def size_label(size: int) -> str:
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    if size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"


def verdict(row: Row) -> str:
    target = TARGETS.get(row.size)
    if target is None:
        return "-"
    word = "PASS" if row.result.ratio <= target else "MISS"
    return word if row.official else f"({word})"


HEADERS = [
    "size",
    "operation",
    "msg/s",
    "ms/msg",
    "bare ms",
    "ratio",
    "ratio range",
    "target",
    "verdict",
    "openssl cms ms",
]


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for row in rows:
        r = row.result
        target = TARGETS.get(row.size)
        out.append(
            [
                size_label(row.size),
                row.operation,
                f"{1 / r.seconds:,.1f}",
                f"{r.seconds * 1e3:.2f}",
                f"{r.bare * 1e3:.2f}",
                f"{r.ratio:.2f}x",
                f"{r.low:.2f}-{r.high:.2f}",
                "-" if target is None else f"<= {target}x",
                verdict(row),
                "-" if row.openssl is None else f"{row.openssl * 1e3:.1f}",
            ]
        )
    return out


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    numeric = [all(_is_number(r[i]) for r in rows) for i in range(len(headers))]
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _is_number(text: str) -> bool:
    return text.lstrip("-")[:1].isdigit() or text in ("-", "")


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(title: str, headers: list[str], rows: list[list[str]], mode: str) -> None:
    if mode == "markdown":
        print(f"\n**{title}**\n")
        print(markdown_table(headers, rows))
        return
    if mode == "rich":
        from rich.console import Console  # noqa: PLC0415 - optional dependency
        from rich.table import Table  # noqa: PLC0415

        table = Table(title=title, title_justify="left")
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i < 2 else "right")
        for r in rows:
            table.add_row(*(c.replace("**", "") for c in r))
        Console(width=max(120, shutil.get_terminal_size().columns)).print(table)
        return
    print(f"\n{title}\n")
    print(plain_table(headers, [[c.replace("**", "") for c in r] for r in rows]))


def machine(openssl: str | None, cpu: int | None) -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cli = "not installed"
    if openssl:
        cli = subprocess.run(
            [openssl, "version"], check=True, capture_output=True, text=True
        ).stdout.strip()
    simd = pybase64.get_version()
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: nproc {os.cpu_count()}, CPU {model}, "
        + (f"pinned to CPU {cpu}" if cpu is not None else "not pinned"),
        f"Python {platform.python_version()} ({ssl.OPENSSL_VERSION} for hashlib)",
        f"cryptography {cryptography.__version__} ({openssl_backend.openssl_version_text()}), "
        f"pybase64 {simd}",
        f"openssl CLI: {cli}",
    ]


def pin() -> int | None:
    """Run on one core (and so do the openssl subprocesses, which inherit it)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def parse_size(text: str) -> int:
    units = {"k": KIB, "kib": KIB, "m": MIB, "mib": MIB, "b": 1, "": 1}
    text = text.strip().lower()
    digits = text.rstrip("kmib")
    unit = text[len(digits) :]
    if not digits.isdigit() or unit not in units:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4k, 64k, 1m, 10m)")
    return int(digits) * units[unit]


def parse_sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few short rounds: a smoke run")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated message body sizes (default 4k,64k,1m,10m)",
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--no-openssl", action="store_true", help="skip the openssl cms runs")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time calls by this thread's CPU time, not wall time: on a loaded machine, "
        "the time other processes hold the pinned core is then not counted",
    )
    parser.add_argument(
        "--malloc-no-trim",
        action="store_true",
        help="glibc only: keep freed memory (mallopt M_TRIM_THRESHOLD 1 GiB, M_MMAP_THRESHOLD "
        "32 MiB) so that large buffers are not returned to the kernel and faulted in again",
    )
    return parser.parse_args(argv)


def measure_size(
    material: Material, size: int, settings: Settings, tool: OpenSsl | None
) -> list[Row]:
    """The four table rows for one message size."""
    label = size_label(size)
    log(f"{label}: building the message and checking the round trip ...")
    work = make_workload(material, make_message(size))
    log(f"{label}: measuring ({settings.rounds} rounds) ...")
    fns = [
        work.protect,
        work.protect_cms,
        work.bare_protect,
        work.unprotect,
        work.unprotect_cms,
        work.bare_unprotect,
    ]
    times = interleaved(fns, settings, settings.round_seconds).seconds
    ossl: tuple[float | None, float | None] = (None, None)
    if tool is not None:
        log(f"{label}: openssl cms ({settings.openssl_runs} runs) ...")
        ossl = tool.measure(work.message, settings.openssl_runs)
    cms_protect, cms_unprotect = (
        "protect (CMS only, no MIME/base64)",
        "unprotect (CMS only, no MIME/base64)",
    )
    return [
        Row(size, "protect", ratio(times[0], times[2]), True, ossl[0]),
        Row(size, cms_protect, ratio(times[1], times[2]), False, None),
        Row(size, "unprotect", ratio(times[3], times[5]), True, ossl[1]),
        Row(size, cms_unprotect, ratio(times[4], times[5]), False, None),
    ]


def malloc_mode(no_trim_requested: bool) -> str:
    if no_trim_requested:
        return no_trim()
    tuned = [f"{k}={v}" for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUN"))]
    return "set by the environment: " + ", ".join(tuned) if tuned else "glibc defaults"


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    settings = QUICK if args.quick else FULL
    if args.cpu_time:
        settings = dataclasses.replace(settings, clock=time.thread_time)
    mode = "markdown" if args.markdown else ("rich" if _has_rich() else "plain")
    started = time.perf_counter()
    cpu = pin()
    malloc = malloc_mode(args.malloc_no_trim)
    openssl = None if args.no_openssl else shutil.which("openssl")
    log("generating the test PKI (RSA-2048) ...")
    material = make_material()
    rows: list[Row] = []
    startup = None
    with tempfile.TemporaryDirectory(prefix="smime-bench-") as tmp:
        tool = None
        if openssl:
            tool = OpenSsl(openssl, Path(tmp), material)
            tool.write_keys()
            startup = tool.startup(settings.openssl_runs)
        for size in args.sizes:
            rows += measure_size(material, size, settings, tool)
    breakdowns = []
    for size in sorted({max(args.sizes), *(s for s in args.sizes if s == 64 * KIB)}):
        log(f"stage breakdown at {size_label(size)} ...")
        message = make_message(size)
        for name, stages in (("protect", protect_stages), ("unprotect", unprotect_stages)):
            title = f"{name} stages at {size_label(size)} (ms per message, median)"
            breakdowns.append(breakdown(title, *stages(material, message), settings))
    elapsed = time.perf_counter() - started

    info = machine(openssl, cpu)
    info.append(f"securemail: {revision()}; malloc: {malloc}")
    info.append(
        f"settings: {'--quick' if args.quick else 'full'}, {settings.rounds} rounds of "
        f"{settings.round_seconds:g} s (max {settings.max_iterations} calls) per measurement, "
        f"{settings.openssl_runs} openssl runs; total run time {elapsed:.0f} s"
    )
    clock = "thread CPU time (--cpu-time)" if args.cpu_time else "wall time"
    info.append(f"clock: {clock}; load average {os.getloadavg()[0]:.2f} at the end")
    if startup is not None:
        info.append(f"openssl process start-up (`openssl version`): {startup * 1e3:.1f} ms")
    print("\n".join(f"- {line}" for line in info) if mode == "markdown" else "\n".join(info))
    render("protect / unprotect on one core", HEADERS, table_rows(rows), mode)
    for b in breakdowns:
        render(b.title, ["stage", "ms", "% of call", "page faults/call"], b.rows, mode)
    return 0


M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3


def no_trim() -> str:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(M_MMAP_THRESHOLD, 32 * MIB)
    except (OSError, AttributeError):
        done = 0
    if not done:
        raise SystemExit("--malloc-no-trim needs glibc's mallopt")
    return "mallopt M_TRIM_THRESHOLD=1 GiB, M_MMAP_THRESHOLD=32 MiB (--malloc-no-trim)"


def revision() -> str:
    """The git revision measured, and whether src/ differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "revision unknown"
    return f"git {head}" + (" (src/ modified)" if dirty else "")


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
