"""Loading a document and its signature from files and from a real HTTPS server on loopback."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from securemail.directory import Directory
from securemail.directory.fetch import Fetched, FetchError, FetchReason, Source
from securemail.pki.authority import Issued, issue, make_root_ca, private_key_pem
from tests.conftest import NOW, Pki
from tests.directory.conftest import Operator
from tests.directory.test_store import Version, signed


@dataclass(frozen=True)
class Route:
    """A fixed answer for one path, for behaviour a file server does not show."""

    body: bytes = b""
    status: int = 200
    location: str | None = None
    send_length: bool = True
    hold: bool = False  # answer only when the test ends: a server that never replies


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # seconds for the server side of each connection

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()  # in this thread, not in the accepting one
        super().setup()

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, LoopbackHttps)
        route = server.routes.get(self.path)
        if route is None:
            path = server.folder / Path(self.path).name
            route = Route(path.read_bytes()) if path.is_file() else Route(status=404)
        if route.hold:
            server.released.wait(timeout=10)
            return
        self.send_response(route.status)
        if route.location is not None:
            self.send_header("Location", route.location)
        if route.send_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


class LoopbackHttps(ThreadingHTTPServer):
    """An HTTPS server on 127.0.0.1 (never any other address), serving ``folder`` and routes."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: Issued, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folder = folder
        self.routes: dict[str, Route] = {}
        self.released = threading.Event()
        cert, key = folder / "server.pem", folder / "server.key"
        cert.write_bytes(tls.certificate_pem())
        key.write_bytes(private_key_pem(tls.private_key, None))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def url(self, name: str) -> str:
        return f"https://localhost:{self.server_address[1]}/{name}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that refuses our certificate or hangs up early is part of the tests."""


Serve = Callable[[Issued, Path], LoopbackHttps]


def tls_certificate(ca: Issued) -> Issued:
    """A TLS server certificate for localhost, issued by ``ca`` and valid on the real clock."""
    return issue(
        ca,
        "localhost",
        now=datetime.now(UTC),
        usage="signing",
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
        domains=["localhost"],
    )


@contextmanager
def running(server: LoopbackHttps) -> Iterator[LoopbackHttps]:
    """Serve in a thread; on leaving, release held requests, shut down and join the thread."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start loopback HTTPS servers; each one is shut down when the test ends."""
    with ExitStack() as stack:
        yield lambda tls, folder: stack.enter_context(running(LoopbackHttps(tls, folder)))


@pytest.fixture
def published(operator: Operator, first: Directory, tmp_path: Path) -> Version:
    """Serial 1 written to ``tmp_path/directory.json`` and ``.p7s``."""
    version = signed(first, operator.signer)
    version.publish(tmp_path / "directory.json")
    return version


@pytest.fixture
def ca_file(pki: Pki, tmp_path: Path) -> Path:
    path, _ = pki.write_ca(tmp_path)
    return path


def test_file_source_reads_document_and_signature(published: Version, tmp_path: Path) -> None:
    """A path means the document there and its signature beside it with .p7s appended."""
    fetched = Source(str(tmp_path / "directory.json")).fetch()
    assert fetched == Fetched(published.document, published.signature)


def test_missing_signature_file_is_unavailable(published: Version, tmp_path: Path) -> None:
    """Without its .p7s the document is not loaded at all."""
    (tmp_path / "directory.json.p7s").unlink()
    with pytest.raises(FetchError) as refused:
        Source(str(tmp_path / "directory.json")).fetch()
    assert refused.value.reason is FetchReason.UNAVAILABLE


def test_oversized_file_refused(published: Version, tmp_path: Path) -> None:
    """A document over the cap is refused."""
    with pytest.raises(FetchError) as refused:
        Source(str(tmp_path / "directory.json"), max_bytes=1000).fetch()
    assert refused.value.reason is FetchReason.TOO_LARGE


@pytest.mark.parametrize("url", ["http://localhost/directory.json", "ftp://host/d.json"])
def test_only_https_urls_are_accepted(url: str) -> None:
    """Plain HTTP and other schemes are refused before any connection is made."""
    with pytest.raises(FetchError) as refused:
        Source(url)
    assert refused.value.reason is FetchReason.INSECURE
    assert "only https://" in refused.value.detail


def test_https_fetch_from_loopback_server(
    pki: Pki, published: Version, ca_file: Path, tmp_path: Path, serve: Serve
) -> None:
    """A server whose certificate chains to --ca-file serves the document and signature."""
    server = serve(tls_certificate(pki.ca), tmp_path)
    fetched = Source(server.url("directory.json"), ca_file=ca_file, timeout=20).fetch()
    assert fetched == Fetched(published.document, published.signature)


def test_server_certificate_from_another_ca_refused(
    published: Version, ca_file: Path, tmp_path: Path, serve: Serve
) -> None:
    """A server whose certificate does not chain to --ca-file is not talked to."""
    other = make_root_ca("Somebody Else", now=NOW)
    server = serve(tls_certificate(other), tmp_path)
    with pytest.raises(FetchError) as refused:
        Source(server.url("directory.json"), ca_file=ca_file, timeout=20).fetch()
    assert refused.value.reason is FetchReason.UNTRUSTED_SERVER


@pytest.mark.parametrize("send_length", [True, False])
def test_oversized_response_refused(
    pki: Pki, ca_file: Path, tmp_path: Path, serve: Serve, send_length: bool
) -> None:
    """A body over the cap is refused, whether announced by Content-Length or streamed."""
    server = serve(tls_certificate(pki.ca), tmp_path)
    server.routes["/big.json"] = Route(b"x" * (4 * 1024 * 1024), send_length=send_length)
    source = Source(server.url("big.json"), ca_file=ca_file, timeout=20, max_bytes=64 * 1024)
    with pytest.raises(FetchError) as refused:
        source.fetch()
    assert refused.value.reason is FetchReason.TOO_LARGE
    announced = "4194304 bytes, over 65536"
    assert (announced in refused.value.detail) is send_length


def test_redirect_to_plain_http_refused(
    pki: Pki, ca_file: Path, tmp_path: Path, serve: Serve
) -> None:
    """A redirect away from https:// is refused, not followed."""
    server = serve(tls_certificate(pki.ca), tmp_path)
    server.routes["/moved.json"] = Route(status=302, location="http://127.0.0.1:9/d.json")
    with pytest.raises(FetchError) as refused:
        Source(server.url("moved.json"), ca_file=ca_file, timeout=20).fetch()
    assert refused.value.reason is FetchReason.INSECURE


def test_redirect_to_https_followed(
    pki: Pki, published: Version, ca_file: Path, tmp_path: Path, serve: Serve
) -> None:
    """A redirect to another https:// URL is followed (the signature, not TLS, decides)."""
    server = serve(tls_certificate(pki.ca), tmp_path)
    server.routes["/moved.json"] = Route(status=301, location=server.url("directory.json"))
    server.routes["/moved.json.p7s"] = Route(published.signature)
    fetched = Source(server.url("moved.json"), ca_file=ca_file, timeout=20).fetch()
    assert fetched == Fetched(published.document, published.signature)


def test_http_error_and_silent_server_are_unavailable(
    pki: Pki, ca_file: Path, tmp_path: Path, serve: Serve
) -> None:
    """A 404 and a server that never answers (within the timeout) both fail as unavailable."""
    server = serve(tls_certificate(pki.ca), tmp_path)
    server.routes["/silent.json"] = Route(hold=True)
    for name, detail in (("missing.json", "HTTP 404"), ("silent.json", "timed out")):
        with pytest.raises(FetchError) as refused:
            Source(server.url(name), ca_file=ca_file, timeout=0.5).fetch()
        assert refused.value.reason is FetchReason.UNAVAILABLE
        assert detail in refused.value.detail
