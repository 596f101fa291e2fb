"""Load a directory document and its detached signature from a file or an https:// URL.

A source ``X`` means the document at ``X`` and its DER signature at ``X.p7s``. What is
loaded is unverified: :class:`securemail.directory.store.DirectoryStore` decides.

Security: the URL, the server, its redirects and the bytes it sends are untrusted. Only
``https://`` is fetched, with the server certificate and host name verified (system store,
or one CA file for a private federation); no proxy from the environment is used; a redirect
to any other scheme is refused; each request has a timeout and a deadline; a body larger
than the cap is refused after reading at most one byte past it. The integrity of what is
fetched rests on the operator's signature, not on TLS: TLS keeps the fetch private and
stops a network attacker from withholding updates silently.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from http.client import HTTPMessage
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from securemail import __version__
from securemail.directory.document import MAX_DOCUMENT_BYTES
from securemail.errors import SecureMailError

SIGNATURE_SUFFIX = ".p7s"
MAX_SIGNATURE_BYTES = 1024 * 1024  # an operator certificate chain and one signature
DEFAULT_TIMEOUT = 30.0
_CHUNK = 64 * 1024


class FetchReason(StrEnum):
    """Why a directory could not be loaded from its source."""

    INSECURE = "directory-source-insecure"
    TOO_LARGE = "directory-too-large"
    UNTRUSTED_SERVER = "directory-server-untrusted"
    UNAVAILABLE = "directory-unavailable"


class FetchError(SecureMailError[FetchReason]):
    """A failed fetch: a reason code and a detail for the operator."""


@dataclass(frozen=True)
class Fetched:
    """A document and its detached signature, as received (unverified)."""

    document: bytes
    signature: bytes


@dataclass(frozen=True)
class Source:
    """Where a gateway gets the directory: a file path or an ``https://`` URL."""

    location: str
    ca_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = MAX_DOCUMENT_BYTES

    def __post_init__(self) -> None:
        if "://" in self.location and urlsplit(self.location).scheme.lower() != "https":
            raise FetchError(
                FetchReason.INSECURE, f"{self.location}: only https:// URLs or file paths"
            )
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    @property
    def is_url(self) -> bool:
        return "://" in self.location

    def fetch(self) -> Fetched:
        """The document and its signature (``location`` and ``location + ".p7s"``)."""
        signature_cap = min(self.max_bytes, MAX_SIGNATURE_BYTES)
        if not self.is_url:
            return Fetched(
                _read_file(Path(self.location), self.max_bytes),
                _read_file(Path(self.location + SIGNATURE_SUFFIX), signature_cap),
            )
        opener = _opener(self.ca_file)
        return Fetched(
            _get(opener, self.location, self.max_bytes, self.timeout),
            _get(opener, self.location + SIGNATURE_SUFFIX, signature_cap, self.timeout),
        )


def _read_file(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            return _read_capped(file, limit, str(path), deadline=None)
    except OSError as exc:
        raise FetchError(FetchReason.UNAVAILABLE, f"{path}: {exc.strerror or exc}") from None


def _read_capped(stream: IO[bytes], limit: int, name: str, *, deadline: float | None) -> bytes:
    """At most ``limit`` bytes; reads one byte past it at most to know it is larger."""
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(min(_CHUNK, limit + 1 - total)):
        total += len(chunk)
        if total > limit:
            raise FetchError(FetchReason.TOO_LARGE, f"{name}: over {limit} bytes")
        if deadline is not None and time.monotonic() > deadline:
            raise FetchError(FetchReason.UNAVAILABLE, f"{name}: too slow (deadline passed)")
        chunks.append(chunk)
    return b"".join(chunks)


class _HttpsRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a few redirects, only to other https:// URLs."""

    max_redirections = 3

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() != "https":
            raise FetchError(FetchReason.INSECURE, f"{req.full_url}: redirect to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(ca_file: Path | None) -> urllib.request.OpenerDirector:
    """An opener with HTTPS and redirects only: no http:, file:, ftp: or environment proxy."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPSHandler(context=context),
        _HttpsRedirects(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _get(opener: urllib.request.OpenerDirector, url: str, limit: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked: https only)
        url, headers={"User-Agent": f"securemail/{__version__}", "Accept-Encoding": "identity"}
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > limit:
                raise FetchError(FetchReason.TOO_LARGE, f"{url}: {length} bytes, over {limit}")
            return _read_capped(response, limit, url, deadline=deadline)
    except urllib.error.HTTPError as exc:
        raise FetchError(FetchReason.UNAVAILABLE, f"{url}: HTTP {exc.code} {exc.reason}") from None
    except OSError as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise FetchError(
                FetchReason.UNTRUSTED_SERVER, f"{url}: {cause.verify_message}"
            ) from None
        raise FetchError(FetchReason.UNAVAILABLE, f"{url}: {cause}") from None
