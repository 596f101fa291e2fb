"""Decide whether a signer's certificate chains to a federation anchor and is not revoked.

Path building and validation (RFC 5280) are pyhanko-certvalidator's, offline: only the
given anchors are trusted, certificates that arrive inside a message only help to build
the path, and revocation comes from the given CRLs. By default a certificate without
revocation information fails (``revocation-unknown``); ``require_revocation=False`` lets it
pass when no current CRL covers it (a certificate a CRL lists as revoked still fails).

A :class:`TrustStore` is immutable once built (new CRLs make a new store) and remembers the
paths it has validated, with the interval in which that result holds: a gateway checks the
same few peer certificates thousands of times a day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from threading import Lock
from typing import Any, TypeVar

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator import CertificateValidator, ValidationContext, errors

from securemail.smime.errors import Reason, SmimeError

_T = TypeVar("_T")
CACHE_LIMIT = 4096


@dataclass(frozen=True)
class ValidatedPath:
    """A signer certificate and the chain that made it trusted, anchor last."""

    certificates: tuple[x509.Certificate, ...]
    valid_from: datetime
    valid_until: datetime

    @property
    def signer(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def anchor(self) -> x509.Certificate:
        return self.certificates[-1]


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Finish a coroutine that never waits (offline validation does no I/O), with no loop.

    Keeps the core synchronous and usable from inside a running event loop.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("certificate validation tried to wait for I/O while offline")


class TrustStore:
    """Federation anchors and CRLs; validates signer certificates against them."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crls: Iterable[x509.CertificateRevocationList] = (),
        *,
        require_revocation: bool = True,
    ) -> None:
        if not anchors:
            raise ValueError("a trust store needs at least one trust anchor")
        self.anchors = tuple(anchors)
        self.crls = tuple(crls)
        self.require_revocation = require_revocation
        self._roots = [_asn1(a) for a in self.anchors]
        self._crls = [c.public_bytes(serialization.Encoding.DER) for c in self.crls]
        self._cache: dict[bytes, ValidatedPath] = {}
        self._lock = Lock()
        # One cold validation at a time: the anchors' asn1crypto objects parse their parts
        # lazily on first use, which is not safe from two threads at once (a worker
        # process that has just started validates a burst in several threads). A cold
        # validation is a few ms and rare (paths are cached), so the wait costs nothing.
        self._validating = Lock()

    def validate(
        self,
        cert: x509.Certificate,
        *,
        now: datetime,
        intermediates: Sequence[x509.Certificate] = (),
        purpose: str = "email_protection",
    ) -> ValidatedPath:
        """Validate ``cert`` for signing at ``now``; raise SmimeError if not trusted.

        ``purpose`` is the extended key usage the certificate must carry: emailProtection for
        message signers, or the SecureMail directory-signing purpose (a dotted OID).
        """
        key = hashlib.sha256(
            purpose.encode()
            + b"".join(c.public_bytes(serialization.Encoding.DER) for c in (cert, *intermediates))
        ).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached.valid_from <= now <= cached.valid_until:
            return cached
        with self._validating:
            path = self._validate(cert, intermediates, now, purpose)
        with self._lock:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = path
        return path

    def _validate(
        self,
        cert: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        now: datetime,
        purpose: str,
    ) -> ValidatedPath:
        """Validate with revocation required; relaxed stores retry without if no CRL covers it."""
        if self._crls:
            try:
                return self._attempt(cert, intermediates, now, "require", purpose)
            except SmimeError as error:
                if self.require_revocation or error.reason is not Reason.REVOCATION_UNKNOWN:
                    raise
        elif self.require_revocation:
            raise SmimeError(Reason.REVOCATION_UNKNOWN, "no CRL is configured for the anchors")
        return self._attempt(cert, intermediates, now, "soft-fail", purpose)

    def _attempt(
        self,
        cert: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        now: datetime,
        revocation_mode: str,
        purpose: str,
    ) -> ValidatedPath:
        try:
            context = ValidationContext(
                trust_roots=self._roots,
                crls=self._crls,
                moment=now,
                allow_fetching=False,
                revocation_mode=revocation_mode,
                weak_hash_algos={"md2", "md5", "sha1"},
            )
            validator = CertificateValidator(
                _asn1(cert),
                intermediate_certs=[_asn1(c) for c in intermediates],
                validation_context=context,
            )
            usage = validator.async_validate_usage(  # type: ignore[no-untyped-call]
                key_usage={"digital_signature"}, extended_key_usage={purpose}
            )
            path = _run(usage)
        except errors.RevokedError as exc:
            raise SmimeError(Reason.REVOKED, str(exc)) from None
        except (errors.ExpiredError, errors.NotYetValidError) as exc:
            raise SmimeError(Reason.CERTIFICATE_EXPIRED, str(exc)) from None
        except errors.InsufficientRevinfoError as exc:
            raise SmimeError(Reason.REVOCATION_UNKNOWN, str(exc)) from None
        except errors.DisallowedAlgorithmError as exc:
            raise SmimeError(Reason.WEAK_ALGORITHM, str(exc)) from None
        except errors.InvalidCertificateError as exc:
            raise SmimeError(Reason.KEY_USAGE, str(exc)) from None
        except (errors.PathBuildingError, errors.PathValidationError) as exc:
            raise SmimeError(Reason.UNTRUSTED_SIGNER, str(exc)) from None
        except ValueError as exc:  # asn1crypto, parsing a certificate the message carried
            raise SmimeError(Reason.MALFORMED, f"certificate: {exc}") from None
        return self._path(path)

    def _path(self, path: Any) -> ValidatedPath:
        certs = tuple(x509.load_der_x509_certificate(c.dump()) for c in path)
        starts = [c.not_valid_before_utc for c in certs]
        ends = [c.not_valid_after_utc for c in certs]
        for crl in self.crls:
            starts.append(crl.last_update_utc)
            if crl.next_update_utc is not None:
                ends.append(crl.next_update_utc)
        return ValidatedPath(tuple(reversed(certs)), max(starts), min(ends))
