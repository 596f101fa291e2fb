"""The classes of record: what a record is about decides how long it is kept."""

from __future__ import annotations

from enum import StrEnum


class RecordClass(StrEnum):
    """What a record is about; each class has its own retention (securemail.records.retention)."""

    MESSAGE = "message"  # message events: accepted, protected, relayed, delivered, bounced
    EVIDENCE = "evidence"  # receipts and the evidence they carry
    QUARANTINE = "quarantine"  # quarantined messages
    ACCOUNT = "account"  # mailbox accounts: logins, lockouts, changes
    SECURITY = "security"  # key custody, directory, operator and API actions, conformance
    DISPOSAL = "disposal"  # what was destroyed, when, under which authority: kept for good
