"""TLS to member gateways: the client context and the SPKI pin check (smarthosts:
securemail.smtpwire.tls).

Security: the peer's certificate chain is untrusted until it verifies to a federation anchor
and its leaf key matches a pin from the signed directory. A member gateway is identified by
that pin, not by a host name (ARCHITECTURE §5), so host names are not checked for members;
for a smarthost the host name is checked as usual (RFC 6125). TLS 1.2 is the floor
(THREATS.md C).
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from securemail.directory.model import certificate_pin

_PIN_PREFIX = "sha256:"


@dataclass(frozen=True)
class ClientCertificate:
    """Our own TLS certificate and key, presented to member gateways (mutual TLS: a peer
    listener lets in only clients whose key the directory pins for a member). The key file
    is encrypted with ``password``, as every key file of the node."""

    certificate: str
    key: str
    password: bytes = field(repr=False)


@dataclass(frozen=True)
class PeerTls:
    """How to check a member gateway: chain to one of ``anchors``, leaf SPKI pin in ``pins``.

    ``pins`` are written as :func:`securemail.directory.model.spki_pin` writes them.
    """

    pins: frozenset[str]
    anchors: tuple[x509.Certificate, ...]
    client: ClientCertificate | None = None  # presented when the peer asks (it must)

    def __post_init__(self) -> None:
        if not self.pins:
            raise ValueError("a member gateway needs at least one SPKI pin")
        if not self.anchors:
            raise ValueError("a member gateway needs at least one federation anchor")
        for pin in self.pins:
            if not pin.startswith(_PIN_PREFIX):
                raise ValueError(f"SPKI pin {pin!r} does not start with {_PIN_PREFIX!r}")


def peer_context(peer: PeerTls) -> ssl.SSLContext:
    """A client context that accepts only chains to the federation anchors (no host name).

    The context holds nothing of one member: the pins are checked after each handshake
    (:func:`leaf_pin`, on every new session), so every member with the same anchors and our
    same client certificate shares one, and a directory refresh that changes only pins
    makes no new context.
    """
    return _federation_context(peer.anchors, peer.client)


@functools.lru_cache(maxsize=8)
def _federation_context(
    anchors: tuple[x509.Certificate, ...], client: ClientCertificate | None
) -> ssl.SSLContext:
    """Built once per anchors and client certificate: building it decrypts our client key
    (PBKDF2, 600,000 rounds: about 0.1 s of CPU on the event loop) and loads the anchors.
    Python's client contexts keep no TLS sessions, so sharing one carries nothing from one
    peer's session to another's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The pin checked after the handshake is the identity; the anchors keep out certificates
    # the federation never issued even if a pin were copied from elsewhere.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    pem = b"".join(a.public_bytes(serialization.Encoding.PEM) for a in anchors)
    context.load_verify_locations(cadata=pem.decode("ascii"))
    if client is not None:
        context.load_cert_chain(client.certificate, client.key, password=client.password)
    return context


def leaf_pin(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The SPKI pin of the certificate the peer presented in this handshake, if any."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    return certificate_pin(der)
