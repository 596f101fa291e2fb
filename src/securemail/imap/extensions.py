"""IMAP extensions pymap lacks: SPECIAL-USE (RFC 6154), NAMESPACE (RFC 2342), QUOTA (RFC 9208).

Theory of operation. pymap parses commands through a registry (``Commands``) and answers
each with the connection state's ``do_<command>`` method; this module adds parsers for
``NAMESPACE``, ``GETQUOTAROOT`` and ``GETQUOTA``, and a ``LIST`` parser that also takes the
``SPECIAL-USE`` selection option and ``RETURN (SPECIAL-USE)`` (RFC 6154 §3, in LIST-EXTENDED
syntax), and :class:`ExtensionsMixin` holds the answers:

- ``LIST`` shows ``\\Sent``, ``\\Drafts``, ``\\Trash``, ``\\Junk`` or ``\\Archive`` on the
  account's special-use folders (:mod:`securemail.deliver.folders`) in every answer, as RFC
  6154 §2 allows; ``LIST (SPECIAL-USE) "" *`` lists only those.
- ``NAMESPACE`` answers one personal namespace, ``""`` with delimiter ``/``, and no other
  users' or shared namespaces (there are none).
- The account's quota (``securemail user quota``) is one quota root, ``""``, holding every
  folder, with the one resource ``STORAGE`` in units of 1024 octets: the usage delivery
  counts (:func:`securemail.deliver.quota.mailbox_usage`). An account without a quota has
  no quota root. ``SETQUOTA`` is not offered: quotas are the operator's.

The full LIST-EXTENDED (several patterns, ``SUBSCRIBED``, ``RECURSIVEMATCH``) is not
offered, so the capability list names ``SPECIAL-USE`` but not ``LIST-EXTENDED``.

Security: every argument is parsed by pymap's primitives; a quota is shown only for the
logged-in account's own mailbox.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, ClassVar

from pymap.parsing import EndLine, Params, Space
from pymap.parsing.command import CommandAuth
from pymap.parsing.command.auth import ListCommand
from pymap.parsing.commands import Commands
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.modutf7 import modutf7_decode
from pymap.parsing.primitives import QuotedString, String
from pymap.parsing.response import ResponseNo, ResponseOk, UntaggedResponse
from pymap.parsing.response.specials import ListResponse, LSubResponse
from pymap.parsing.specials import Mailbox

from securemail.deliver.folders import SPECIAL_USE
from securemail.deliver.quota import mailbox_usage

CAPABILITIES = (b"SPECIAL-USE", b"NAMESPACE", b"QUOTA", b"QUOTA=RES-STORAGE")
QUOTA_ROOT = ""  # the one quota root: the whole mailbox
_SPECIAL_USE_OPTION = b"SPECIAL-USE"
_RETURN = re.compile(rb" +RETURN +", re.IGNORECASE)
_OPTIONS = re.compile(rb"\(([A-Za-z0-9 -]{0,100})\)")


class SpecialUseListCommand(ListCommand):
    """``LIST [(SPECIAL-USE)] ref pattern [RETURN (SPECIAL-USE)]`` (RFC 6154 §3)."""

    def __init__(self, tag: bytes, ref_name: str, filter_: str, *, special_only: bool) -> None:
        super().__init__(tag, ref_name, filter_)
        self.special_only = special_only

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[SpecialUseListCommand, memoryview]:
        _, buf = Space.parse(buf, params)
        special_only = False
        if bytes(buf[:1]) == b"(":
            special_only, buf = _options(buf)
            _, buf = Space.parse(buf, params)
        ref_name, buf = Mailbox.parse(buf, params)
        _, buf = Space.parse(buf, params)
        match = cls._list_mailbox_pattern.match(buf)
        if match:
            filter_ = modutf7_decode(match.group(0))
            buf = buf[match.end(0) :]
        else:
            filter_str, buf = String.parse(buf, params)
            filter_ = modutf7_decode(filter_str.value)
        returned = _RETURN.match(buf)
        if returned:
            _, buf = _options(buf[returned.end(0) :])  # attributes are always returned
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag, ref_name.value, filter_, special_only=special_only), buf


def _options(buf: memoryview) -> tuple[bool, memoryview]:
    """Whether the parenthesised option list at ``buf`` names SPECIAL-USE, and the rest;
    NotParseable for any other option (none other is offered)."""
    match = _OPTIONS.match(buf)
    if match is None:
        raise NotParseable(buf)
    names = set(match[1].upper().split())
    if names - {_SPECIAL_USE_OPTION}:
        raise NotParseable(buf)
    return bool(names), buf[match.end(0) :]


class NamespaceCommand(CommandAuth):
    """``NAMESPACE`` (RFC 2342)."""

    command: ClassVar[bytes] = b"NAMESPACE"

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[NamespaceCommand, memoryview]:
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag), buf


class GetQuotaRootCommand(CommandAuth):
    """``GETQUOTAROOT mailbox`` (RFC 9208 §4.3)."""

    command: ClassVar[bytes] = b"GETQUOTAROOT"

    def __init__(self, tag: bytes, mailbox: str) -> None:
        super().__init__(tag)
        self.mailbox = mailbox

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[GetQuotaRootCommand, memoryview]:
        _, buf = Space.parse(buf, params)
        mailbox, buf = Mailbox.parse(buf, params)
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag, mailbox.value), buf


class GetQuotaCommand(CommandAuth):
    """``GETQUOTA root`` (RFC 9208 §4.2)."""

    command: ClassVar[bytes] = b"GETQUOTA"

    def __init__(self, tag: bytes, root: str) -> None:
        super().__init__(tag)
        self.root = root

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[GetQuotaCommand, memoryview]:
        _, buf = Space.parse(buf, params)
        root, buf = String.parse(buf, params)
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag, root.value.decode("utf-8", "replace")), buf


def commands() -> Commands:
    """pymap's commands with this module's parsers added (LIST replaced)."""
    registry = Commands()
    for command in (SpecialUseListCommand, NamespaceCommand, GetQuotaRootCommand, GetQuotaCommand):
        registry.register(command)
    return registry


_Answer = tuple[ResponseOk | ResponseNo, Any]


class ExtensionsMixin:
    """The answers, for pymap's connection state (which supplies ``session``)."""

    session: Any
    _selected: Any

    async def do_list(self, cmd: ListCommand) -> _Answer:
        """pymap's LIST, with the special-use attributes (and SPECIAL-USE selection)."""
        found, updates = await self.session.list_mailboxes(
            cmd.ref_name, cmd.filter, subscribed=cmd.only_subscribed, selected=self._selected
        )
        only = getattr(cmd, "special_only", False)
        answer = ResponseOk(cmd.tag, cmd.command + b" completed.")
        kind = LSubResponse if cmd.only_subscribed else ListResponse
        for name, delimiter, attributes in found:
            use = SPECIAL_USE.get(name)
            if only and use is None:
                continue
            answer.add_untagged(kind(name, delimiter, [*attributes, use] if use else attributes))
        return answer, updates

    async def do_namespace(self, cmd: NamespaceCommand) -> _Answer:
        answer = ResponseOk(cmd.tag, b"NAMESPACE completed.")
        answer.add_untagged(UntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL'))
        return answer, None

    async def do_getquotaroot(self, cmd: GetQuotaRootCommand) -> _Answer:
        try:
            await self.session.mailbox_set.get_mailbox(cmd.mailbox)
        except KeyError:
            return ResponseNo(cmd.tag, b"No such mailbox."), None
        limit = self.session.quota
        answer = ResponseOk(cmd.tag, b"GETQUOTAROOT completed.")
        name = bytes(Mailbox(cmd.mailbox))
        if limit is None:
            answer.add_untagged(UntaggedResponse(b"QUOTAROOT " + name))
            return answer, None
        answer.add_untagged(UntaggedResponse(b"QUOTAROOT " + name + b' ""'))
        answer.add_untagged(await self._quota(limit))
        return answer, None

    async def do_getquota(self, cmd: GetQuotaCommand) -> _Answer:
        limit = self.session.quota
        if limit is None or cmd.root != QUOTA_ROOT:
            return ResponseNo(cmd.tag, b"No such quota root."), None
        answer = ResponseOk(cmd.tag, b"GETQUOTA completed.")
        answer.add_untagged(await self._quota(limit))
        return answer, None

    async def _quota(self, limit: int) -> UntaggedResponse:
        maildir: Path = self.session.maildir
        used = await asyncio.to_thread(mailbox_usage, maildir)
        root = bytes(QuotedString(QUOTA_ROOT.encode()))
        usage = b"(STORAGE %d %d)" % (-(-used // 1024), limit // 1024)
        return UntaggedResponse(b"QUOTA " + root + b" " + usage)
