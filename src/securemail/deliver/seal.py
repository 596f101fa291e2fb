"""The mailbox seal: proof that this node's gateway wrote a stored message into this mailbox.

Theory of operation. Whatever the gateway stores in a Maildir it hosts (inbound mail it
delivered, its own notices and receipts, the webmail's copy of mail sent) starts with one
line the gateway computes::

    X-SecureMail-Seal: v=1; o=delivered; m=<base64url of 32 octets>

``m`` is HMAC-SHA256 under the node's seal key (:data:`KEY_BYTES` random octets, made at
the node's first start and kept sealed under the node passphrase beside the accounts'
other secrets, never in a message) over the mailbox (its primary address, lower-cased), the
origin ``o`` and the SHA-256 of every octet of the file after that line. A mail client with
the mailbox's password can append, copy, flag and delete, but it cannot compute ``m``:

- a message appended over IMAP, or edited, or a genuine one appended to *another*
  mailbox, does not check (other octets or other mailbox), so it shows as not verified;
- a message moved or copied between folders of its own mailbox keeps its octets (flags live
  in the file name, never in the file), so it stays what it was;
- a seal copied onto another message checks against that message's octets, and fails.

The trust fields inside the file (``Authentication-Results``, ``X-SecureMail-Status``,
:mod:`securemail.marking`) are believed only under a good seal of origin ``delivered``:
the gateway wrote them after removing every copy that came from outside.

Cost: one SHA-256 over the file and one HMAC per check (≈ 2 ms per MiB, 15 µs for a 4 KiB
message on this kind of
machine, measured in tests/deliver/test_seal.py). Checks are remembered per file by
(device, inode, size, mtime, ctime): a file a client creates is a new inode with a new
ctime, which no client can set, so a remembered answer is never reused for other octets.

Security: the file is untrusted. Only an exact first line in the form above is read; the
MAC is compared in constant time; any doubt is "not sealed".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from enum import StrEnum
from pathlib import Path

KEY_BYTES = 32
SEAL_FIELD = "X-SecureMail-Seal"
_PREFIX = f"{SEAL_FIELD}: v=1; o=".encode()
_DOMAIN = b"securemail mailbox seal v1\0"  # keeps these MACs apart from any other use of the key
_MAC_TEXT = 43  # base64url of 32 octets, unpadded
_MAX_LINE = len(_PREFIX) + 16 + len(b"; m=") + _MAC_TEXT + 1
_CHUNK = 1 << 20
_REMEMBERED = 20_000  # file checks kept (≈ 2 MiB); the oldest is forgotten first


class Origin(StrEnum):
    """Who wrote a sealed message into the mailbox, and so what the webmail may say of it."""

    DELIVERED = "delivered"  # inbound mail the gateway delivered (verified or not: its fields say)
    NOTICE = "notice"  # the gateway's own notice or receipt to this mailbox
    SENT = "sent"  # the webmail's copy of mail this mailbox sent through the gateway


class MailboxSeal:
    """Seals stored messages and checks seals, under one node key (see the module doc).

    Safe to share between threads: the only state besides the key is the memory of checks.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the mailbox seal key must be {KEY_BYTES} octets")
        self._key = key
        self._remembered: OrderedDict[tuple[object, ...], Origin | None] = OrderedDict()
        self._lock = threading.Lock()

    def stamp(self, mailbox: str, origin: Origin, content: bytes) -> bytes:
        """``content`` (the stored form, LF line ends) with its seal line in front."""
        digest = hashlib.sha256(content).digest()
        mac = base64.urlsafe_b64encode(self._mac(mailbox, origin, digest)).rstrip(b"=")
        return _PREFIX + origin.value.encode() + b"; m=" + mac + b"\n" + content

    def origin_of(self, mailbox: str, data: bytes) -> Origin | None:
        """The origin ``data`` (a whole stored file) is sealed with for ``mailbox``, or None."""
        end = data.find(b"\n", 0, _MAX_LINE)
        if end < 0:
            return None
        return self._judge(mailbox, data[: end + 1], hashlib.sha256(data[end + 1 :]).digest())

    def _judge(self, mailbox: str, line: bytes, digest: bytes) -> Origin | None:
        """Whether the seal ``line`` (with its LF) is right for ``digest`` of what follows it."""
        if not line.startswith(_PREFIX) or not line.endswith(b"\n"):
            return None
        origin_text, sep, mac_text = line[len(_PREFIX) : -1].partition(b"; m=")
        if not sep or len(mac_text) != _MAC_TEXT:
            return None
        try:
            origin = Origin(origin_text.decode("ascii"))
            mac = base64.urlsafe_b64decode(mac_text + b"=")
        except (UnicodeDecodeError, ValueError):
            return None
        return origin if hmac.compare_digest(mac, self._mac(mailbox, origin, digest)) else None

    def origin_of_file(self, mailbox: str, path: Path) -> Origin | None:
        """:meth:`origin_of` for the file at ``path`` (not followed if a link), remembered."""
        try:
            status = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        known = (
            mailbox.lower(),
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        with self._lock:
            if known in self._remembered:
                self._remembered.move_to_end(known)
                return self._remembered[known]
        origin = self._check_file(mailbox, path)
        with self._lock:
            self._remembered[known] = origin
            if len(self._remembered) > _REMEMBERED:
                self._remembered.popitem(last=False)
        return origin

    def _check_file(self, mailbox: str, path: Path) -> Origin | None:
        """Read the seal line, then hash the rest in chunks (a message may be large)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with os.fdopen(os.open(path, flags), "rb") as file:
                line = file.readline(_MAX_LINE)
                digest = hashlib.sha256()
                while chunk := file.read(_CHUNK):
                    digest.update(chunk)
        except OSError:
            return None
        return self._judge(mailbox, line, digest.digest())

    def _mac(self, mailbox: str, origin: Origin, digest: bytes) -> bytes:
        text = _DOMAIN + mailbox.lower().encode() + b"\0" + origin.value.encode() + b"\0" + digest
        return hmac.new(self._key, text, hashlib.sha256).digest()
