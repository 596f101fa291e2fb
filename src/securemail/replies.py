"""SMTP replies and per-recipient outcomes: the one shape every service reports results in.

Every failure a peer or user can see carries an SMTP code (RFC 5321 §4.2), an enhanced
status code (RFC 3463), whether it is temporary, and a SecureMail reason code. The text
sent to a remote peer is generic; the detail is for the operator's log only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: ``code`` 2xx/4xx/5xx, ``status`` such as "5.7.1", and the reason code."""

    code: int
    status: str
    text: str
    reason: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code out of range: {self.code}")
        if self.status and self.status[0] != str(self.code)[0]:
            raise ValueError(f"enhanced status {self.status} does not match code {self.code}")

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def line(self) -> str:
        """The reply as sent on the wire (without CRLF): ``550 5.7.1 text``."""
        status = f"{self.status} " if self.status else ""
        return f"{self.code} {status}{self.text}"


def ok(text: str = "OK") -> Reply:
    return Reply(250, "2.0.0", text)


def temporary(reason: str, detail: str, text: str = "Try again later") -> Reply:
    return Reply(451, "4.3.0", text, reason, detail)


def permanent(reason: str, detail: str, status: str = "5.7.1", text: str = "Refused") -> Reply:
    return Reply(550 if status != "5.3.4" else 552, status, text, reason, detail)
