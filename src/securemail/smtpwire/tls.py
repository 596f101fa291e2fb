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
