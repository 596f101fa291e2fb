"""The browser safety net on every response: CSP, no sniffing, no referrer, no caching.

The Content-Security-Policy allows only this origin's style sheets and images (and inline
``data:`` images), no script at all, forms that post only here, no framing of our pages
by others, and frames only from this origin (the webmail's sandboxed message view). A
response that sets its own policy (that frame) keeps it. HSTS is sent when the request
came over TLS. Everything but /static is ``Cache-Control: no-store``: pages show mail and
account details that must not stay in a shared cache or the back-button history.

Origin checks (``same_origin``) back CSRF tokens on every state change (OWASP CSRF
cheat sheet: verify the source origin with standard headers).

Security: the Origin and Referer headers are untrusted; a request that has neither is
refused, since every browser that runs our forms sends Origin on POST.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "frame-src 'self'",
    ]
)
PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
HSTS = "max-age=31536000; includeSubDomains"
_ALWAYS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # not "no-referrer": under it Chromium sends "Origin: null" on our own form POSTs
    # (Fetch: serializing a request origin), which same_origin rightly refuses
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS,
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_headers(MutableHeaders(scope=message), scope)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_headers(headers: MutableHeaders, scope: Scope) -> None:
    """The safety headers for a response to the request ``scope`` (kept where already set).

    The middleware calls it for every response; the 500 page calls it itself, because
    Starlette answers an unhandled error outside all middleware.
    """
    for name, value in _ALWAYS.items():
        headers.setdefault(name, value)
    if scope.get("scheme") == "https":
        headers.setdefault("Strict-Transport-Security", HSTS)
    if not str(scope.get("path", "")).startswith("/static/"):
        headers["Cache-Control"] = "no-store"


def same_origin(headers: Headers, origin: str) -> bool:
    """Whether the request's Origin (or, without one, its Referer) is ``origin``."""
    claimed = headers.get("origin")
    if claimed is None:
        referer = headers.get("referer")
        if referer is None:
            return False
        parts = urlsplit(referer)
        claimed = f"{parts.scheme}://{parts.netloc}"
    return claimed.lower() == origin.lower()
