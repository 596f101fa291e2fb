"""A fresh TrustStore validated from several threads at once (a worker process just
started, unprotecting a burst): every validation gets the same verdict as alone."""

from __future__ import annotations

import threading

from securemail.smime import SmimeError
from securemail.smime.trust import TrustStore
from tests.conftest import NOW, Pki

THREADS = 8
ROUNDS = 100


def _all_at_once(store: TrustStore, pki: Pki) -> list[str]:
    start = threading.Barrier(THREADS)
    verdicts: list[str] = []

    def validate(n: int) -> None:
        org = (pki.agency, pki.ministry, pki.council, pki.revoked)[n % 4]
        start.wait()
        try:
            store.validate(org.certificate, now=NOW)
        except SmimeError as error:
            verdicts.append(f"{org.certificate.subject.rfc4514_string()}: {error.reason}")
        else:
            verdicts.append(f"{org.certificate.subject.rfc4514_string()}: ok")

    threads = [threading.Thread(target=validate, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(verdicts)


def test_cold_validations_in_parallel_agree_with_one_at_a_time(pki: Pki) -> None:
    """Eight threads validating on a new store (no path cached yet) get exactly the
    verdicts one thread gets: valid members valid, the revoked one revoked, no
    revocation-unknown from a race on the parsed anchors."""
    alone = TrustStore([pki.ca.certificate], [pki.crl])
    expected = []
    for n in range(THREADS):
        org = (pki.agency, pki.ministry, pki.council, pki.revoked)[n % 4]
        try:
            alone.validate(org.certificate, now=NOW)
            verdict = "ok"
        except SmimeError as error:
            verdict = str(error.reason)
        expected.append(f"{org.certificate.subject.rfc4514_string()}: {verdict}")
    for _ in range(ROUNDS):
        assert _all_at_once(TrustStore([pki.ca.certificate], [pki.crl]), pki) == sorted(expected)
