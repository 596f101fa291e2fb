"""Reason codes of the node itself: configuration and start-up refusals."""

from __future__ import annotations

from enum import StrEnum


class NodeReason(StrEnum):
    BAD_CONFIG = "bad-config"
    KEYS_UNAVAILABLE = "keys-unavailable"
    NO_DIRECTORY = "no-directory"
    NOT_A_MEMBER = "node-not-a-member"
    LISTEN_FAILED = "listen-failed"  # a port in use, not allowed, or an address not ours
