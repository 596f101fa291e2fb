"""The conformance kit: test a member's gateway against the profile's requirements (§14).

:func:`~securemail.conformance.session.run_conformance` sends the test messages of
:mod:`~securemail.conformance.cases` to a gateway, collects its receipts and notices, and
returns findings; :mod:`~securemail.conformance.report` turns them into the signed report.
``securemail conformance run`` (securemail.cli.conformance) is the command around them.
Every refusal of the kit's own input is the one error below:

    ConformanceError(SecureMailError[ConformanceReason])
      reason: ConformanceReason   e.g. ConformanceReason.MEMBER_UNKNOWN -> "member-unknown"
      detail: str
"""

from __future__ import annotations

from enum import StrEnum

from securemail.errors import SecureMailError


class ConformanceReason(StrEnum):
    """Why a conformance run could not start, or what it concluded."""

    MEMBER_UNKNOWN = "member-unknown"  # the member (or the tester) is not in the directory
    BAD_TARGET = "bad-target"  # --target or --listen is not HOST:PORT
    KEYS_UNAVAILABLE = "keys-unavailable"  # the tester's keys cannot be opened
    UNREADABLE = "input-unreadable"  # the anchor or the directory cannot be read
    LISTEN_FAILED = "listen-failed"  # the kit cannot listen on the tester's endpoint
    OUT_EXISTS = "out-exists"  # the report folder is there already: never overwritten
    NOT_CONFORMANT = "conformance-failed"  # the run ended and a requirement failed
    REGRESSED = "conformance-regressed"  # a requirement the member passed before now fails
    NOT_RUN = "conformance-not-run"  # a scheduled run could not start (see the detail)


class ConformanceError(SecureMailError[ConformanceReason]):
    """A conformance run refused or failed: a stable reason code plus a detail."""
