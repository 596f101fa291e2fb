"""SMTP wire details shared by the outbound clients: remote replies as Reply values, safe args.

Used by :mod:`securemail.relay.client` and :mod:`securemail.deliver.smtp`.

Security: the reply text comes from the remote server and is untrusted. It is kept only in
``detail`` (for the operator's log and the notice's Diagnostic-Code), with control
characters removed and its length capped; ``text`` is always our own generic wording. An
address that could break a command line (CR, LF, NUL, ``<``, ``>``, space) is never sent.
"""

from __future__ import annotations

import re

from securemail.replies import Reply

MAX_DETAIL = 512  # characters of a remote reply kept for the log
_STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}(?=\s|$)")  # RFC 3463 §2: class.subject.detail
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
PROTOCOL_ERROR = "protocol-error"


def enhanced_status(code: int, text: str) -> str:
    """The enhanced status at the start of ``text`` (RFC 2034 §3), or ``<class>.0.0``.

    A status whose class does not match the reply code is ignored, so a Reply never
    carries "2.0.0" with a 550.
    """
    match = _STATUS.match(text.lstrip())
    if match is not None and match.group(1) == str(code)[0]:
        return match.group(0)
    return f"{str(code)[0]}.0.0"


def clean_detail(text: str) -> str:
    """Remote text made safe for one log line: controls to spaces, capped in length."""
    return _CONTROL.sub(" ", text).strip()[:MAX_DETAIL]


def wire_reply(code: int, text: str, *, reason: str) -> Reply:
    """The Reply for one remote answer: 2xx accepted, 4xx temporary, 5xx permanent.

    Anything else (a 3xx where a final answer was due, a malformed code) is not a definite
    answer, so it becomes a temporary 451 4.5.0 and the queue retries.
    """
    first = text.splitlines()[0] if text else ""
    detail = clean_detail(f"{code} {text}")
    if 200 <= code < 300:
        return Reply(code, enhanced_status(code, first), "Accepted", "", detail)
    if 400 <= code < 500:
        return Reply(
            code, enhanced_status(code, first), "Deferred by the remote server", reason, detail
        )
    if 500 <= code < 600:
        return Reply(
            code, enhanced_status(code, first), "Refused by the remote server", reason, detail
        )
    return Reply(451, "4.5.0", "Unexpected reply from the remote server", PROTOCOL_ERROR, detail)


def unsafe_text(text: str) -> bool:
    """Text that would break, or inject into, an SMTP command line."""
    return any(c in "<> " or ord(c) < 32 or ord(c) == 127 for c in text)


def bad_address(status: str, address: str) -> Reply:
    """553 for an address we will not put on the wire (5.1.7 sender, 5.1.3 recipient)."""
    return Reply(553, status, "Bad address", "bad-address", clean_detail(repr(address)))


def needs_smtputf8(mail_from: str, recipients: list[str]) -> bool:
    """Whether any address is non-ASCII (RFC 6531 §3.2: needs the SMTPUTF8 extension)."""
    return not (mail_from.isascii() and all(r.isascii() for r in recipients))


def no_smtputf8(reason: str, address: str) -> Reply:
    """553 5.6.7: the server cannot take a non-ASCII address (RFC 6531 §3.2, RFC 6533)."""
    return Reply(553, "5.6.7", "Address needs SMTPUTF8", reason, clean_detail(address))


def data_payload(body: bytes) -> bytes:
    """What follows a 354: ``body`` with CRLF line ends, dot-stuffed, ending in CRLF.CRLF.

    RFC 5321 §4.5.2 (a line starting with "." gets another); THREATS.md B (SMTP smuggling):
    every bare CR and bare LF becomes CRLF, so no server after us can read a line end, or
    an end of data, that we did not send. The relayed body is already CRLF-canonical, so
    that is checked by counting before anything is rewritten.
    """
    crlf = body.count(b"\r\n")
    if body.count(b"\r") != crlf or body.count(b"\n") != crlf:
        body = _LINE_ENDS.sub(b"\r\n", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"
