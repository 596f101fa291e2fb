"""The signed member directory of a SecureMail federation: who is a member, of which domains.

The names exported here are pure: documents and certificates in, verdicts out
(:mod:`.model`, :mod:`.document`). The gateway's I/O around them lives in its own modules:
:mod:`.fetch` (file or HTTPS), :mod:`.store` (the last good version on disk) and
:mod:`.refresh` (the schedule the gateway service runs).
"""

from securemail.directory.document import (
    Accepted,
    DirectoryError,
    DirectoryReason,
    canonical,
    check_succession,
    digest,
    next_version,
    parse,
    sign_document,
    verify_document,
)
from securemail.directory.model import (
    Contact,
    Directory,
    Endpoint,
    KeyPair,
    Member,
    ModelError,
    UpstreamQueue,
    spki_pin,
)

__all__ = [
    "Accepted",
    "Contact",
    "Directory",
    "DirectoryError",
    "DirectoryReason",
    "Endpoint",
    "KeyPair",
    "Member",
    "ModelError",
    "UpstreamQueue",
    "canonical",
    "check_succession",
    "digest",
    "next_version",
    "parse",
    "sign_document",
    "spki_pin",
    "verify_document",
]
