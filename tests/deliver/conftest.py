"""The TLS test PKI for delivery tests (a store's certificate), made once per session."""

from __future__ import annotations

import pytest

from tests.relay.loopback import TlsPki, make_tls_pki


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    """A CA and a server certificate for "localhost", plus one from another CA."""
    return make_tls_pki(tmp_path_factory.mktemp("deliver-tls"))
