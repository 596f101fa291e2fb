"""The signed member directory of a SecureMail federation: who is a member, of which domains.

Pure: documents and certificates in, verdicts out. Fetching and storing it is the CLI's and
the gateway's business (:mod:`securemail.cli.directory`).
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
    "canonical",
    "check_succession",
    "digest",
    "next_version",
    "parse",
    "sign_document",
    "spki_pin",
    "verify_document",
]
