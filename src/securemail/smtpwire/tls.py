"""Client TLS for ordinary SMTP servers (a smarthost, an organisation's own store)."""

from __future__ import annotations

import functools
import ssl


@functools.lru_cache(maxsize=8)
def smarthost_context(cafile: str | None, *, verify: bool) -> ssl.SSLContext:
    """A client context for an ordinary SMTP server: ``cafile`` or the system store.

    ``verify=False`` is opportunistic TLS (RFC 7435): encrypted, but not authenticated.
    """
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def store_context(
    cafile: str | None, certificate: str | None, key: str | None, password: bytes | None
) -> ssl.SSLContext:
    """A verifying client context for an organisation's own store, with a client
    certificate when ``certificate`` and ``key`` are given (the key may be encrypted under
    ``password``). Not cached: it holds a private key."""
    if certificate is None or key is None:
        return smarthost_context(cafile, verify=True)
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key, password=password)
    return context
