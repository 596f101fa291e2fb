"""The TLS test PKI for relay tests, made once per session."""

from __future__ import annotations

import pytest

from tests.relay.loopback import TlsPki, make_tls_pki


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    """A federation CA, a gateway server certificate and a stranger's certificate."""
    return make_tls_pki(tmp_path_factory.mktemp("relay-tls"))
