"""Reason codes of the node itself: configuration and start-up refusals."""

from __future__ import annotations

from enum import StrEnum


class NodeReason(StrEnum):
    BAD_CONFIG = "bad-config"
    KEYS_UNAVAILABLE = "keys-unavailable"
    NO_DIRECTORY = "no-directory"
    NOT_A_MEMBER = "node-not-a-member"
    LISTEN_FAILED = "listen-failed"  # a port in use, not allowed, or an address not ours


class HoldReason(StrEnum):
    """Why inbound mail is held rather than quarantined or bounced (docs/recovery.md)."""

    # the message is for one of this node's organisations, encrypted to a certificate of
    # it whose private key is not installed (before ``keys restore`` or ``install-next``)
    KEY_UNAVAILABLE = "key-unavailable"


class UpstreamReason(StrEnum):
    """An upstream queue's refusals and outcomes (profile §11.1)."""

    CIPHERTEXT_ONLY = "upstream-ciphertext-only"  # at DATA: not one encrypted entity
    EXPIRED = "upstream-expired"  # kept for [upstream] keep_for without the gateway answering
    NOT_BACKED_UP = "upstream-not-backed-up"  # the member is no longer one this node backs up
