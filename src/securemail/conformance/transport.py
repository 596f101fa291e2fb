"""The kit's look at a gateway's door: STARTTLS, the TLS version, the certificate, the pin.

Each is its own report entry: SM-TLS-3 (STARTTLS offered, MAIL refused before it), SM-TLS-6
(TLS 1.2 or newer negotiated, TLS 1.1 refused), SM-TLS-7 (the certificate chains to a
federation anchor and is within its validity), SM-TLS-8 (its key is a pin the directory
lists for the member). The certificate is fetched with verification off and judged here,
so a bad certificate and a bad pin are told apart instead of both ending the handshake.

Security: nothing is sent on these connections but EHLO, STARTTLS, MAIL (refused or
abandoned) and QUIT; the certificate is untrusted input, only parsed and compared.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable
from datetime import datetime

import aiosmtplib
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from securemail.directory.model import spki_pin

Add = Callable[[str, str, bool, str], None]


def _client(host: str, port: int, local: str) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=host, port=port, start_tls=False, timeout=30, local_hostname=local
    )


async def check_door(add: Add, host: str, port: int, local: str, sender: str) -> bool:
    """SM-TLS-3: STARTTLS is offered, and MAIL before it is refused with 530; whether it
    was offered."""
    client = _client(host, port, local)
    try:
        await client.connect()
        await client.ehlo()
        offered = client.supports_extension("starttls")
        reply = await client.execute_command(b"MAIL", f"FROM:<{sender}>".encode())
    except (aiosmtplib.SMTPException, OSError) as error:
        add("SM-TLS-3", "door", False, f"could not talk SMTP: {error}")
        return False
    finally:
        client.close()
    add("SM-TLS-3", "door", offered, "STARTTLS offered" if offered else "no STARTTLS")
    add("SM-TLS-3", "door", reply.code == 530, f"MAIL before STARTTLS answered {reply.code}")
    return offered


def _probe_context(client: tuple[str, str, bytes] | None, *, old: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # judged below, so each fault is named on its own
    if old:  # deliberately what no gateway may accept (profile §10, SM-TLS-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if client is not None:
        context.load_cert_chain(client[0], client[1], password=client[2])
    return context


async def _handshake(
    host: str, port: int, local: str, context: ssl.SSLContext
) -> tuple[str, bytes]:
    """(the TLS version, the server's leaf certificate DER) after STARTTLS."""
    client = _client(host, port, local)
    try:
        await client.connect()
        await client.ehlo()
        await client.starttls(tls_context=context)
        tls = client.get_transport_info("ssl_object")
        return str(tls.version()), bytes(tls.getpeercert(binary_form=True) or b"")
    finally:
        client.close()


async def check_tls(
    add: Add,
    where: tuple[str, int, str],
    *,
    anchors: tuple[x509.Certificate, ...],
    pins: frozenset[str],
    client: tuple[str, str, bytes] | None,
    now: datetime,
) -> None:
    """SM-TLS-6, 7 and 8 from one handshake as any client makes it, and one offering only
    TLS 1.1 (skipped, with a note, where this host's TLS library cannot offer it)."""
    host, port, local = where
    try:
        version, leaf = await _handshake(host, port, local, _probe_context(client, old=False))
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as error:
        for requirement in ("SM-TLS-6", "SM-TLS-7", "SM-TLS-8"):
            add(requirement, "tls", False, f"no TLS handshake: {error}")
        return
    modern = version in ("TLSv1.2", "TLSv1.3")
    add("SM-TLS-6", "tls", modern, f"negotiated {version}")
    certificate = x509.load_der_x509_certificate(leaf) if leaf else None
    chained, detail = chains_to_anchor(certificate, anchors, now)
    add("SM-TLS-7", "tls", chained, detail)
    pin = "" if certificate is None else spki_pin(certificate)
    listed = pin in pins
    add(
        "SM-TLS-8",
        "tls",
        listed,
        f"key {pin or 'none'} {'is' if listed else 'is not'} a pin the directory lists",
    )
    await _check_old_version(add, host, port, local, client)


async def _check_old_version(
    add: Add, host: str, port: int, local: str, client: tuple[str, str, bytes] | None
) -> None:
    try:
        context = _probe_context(client, old=True)
        version, _ = await _handshake(host, port, local, context)
    except ssl.SSLError as error:
        if "NO_PROTOCOLS_AVAILABLE" in str(error) or "no protocols" in str(error).lower():
            return  # this host cannot offer TLS 1.1: the negotiated version stands alone
        add("SM-TLS-6", "tls-1.1", True, "a TLS 1.1-only handshake was refused")
        return
    except (aiosmtplib.SMTPException, OSError) as error:
        add("SM-TLS-6", "tls-1.1", True, f"a TLS 1.1-only handshake was refused ({error})")
        return
    add("SM-TLS-6", "tls-1.1", False, f"a TLS 1.1-only client was let in ({version})")


def chains_to_anchor(
    certificate: x509.Certificate | None, anchors: tuple[x509.Certificate, ...], now: datetime
) -> tuple[bool, str]:
    """Whether ``certificate`` was issued by one of ``anchors`` and is valid at ``now``."""
    if certificate is None:
        return False, "no certificate presented"
    subject = certificate.subject.rfc4514_string()
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return False, f"{subject}: outside its validity period"
    for anchor in anchors:
        try:
            certificate.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True, f"{subject}: issued by {anchor.subject.rfc4514_string()}"
    return False, f"{subject}: not issued by a federation anchor"
