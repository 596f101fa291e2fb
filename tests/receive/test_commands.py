"""A session built from the once-per-listener command table equals one aiosmtpd builds."""

from __future__ import annotations

import asyncio
import collections
import inspect
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from securemail.receive import Listener, start_relay_listener
from securemail.receive.commands import command_table
from securemail.receive.conversation import Conversation
from securemail.receive.relay import RelayGate
from securemail.receive.server import _IDENT, _Session
from tests.receive.conftest import (
    LOOPBACK,
    Inbox,
    RawClient,
    Tls,
    check_recipient,
    run,
    sender_allowed,
    with_listener,
)
from tests.receive.conftest import settings as listener_settings


def _normal(value: Any, owner: object) -> Any:
    """A comparable picture of one attribute: methods by function and owner, no identities."""
    if inspect.ismethod(value):
        return ("method", value.__func__, "session" if value.__self__ is owner else value.__self__)
    if isinstance(value, collections.defaultdict):
        return ("defaultdict", dict(value), value.default_factory and value.default_factory())
    if isinstance(value, dict):
        return [(key, _normal(item, owner)) for key, item in value.items()]
    if isinstance(value, tuple):
        return (type(value), *(_normal(item, owner) for item in value))
    if isinstance(value, asyncio.StreamReader):
        return ("reader", value._limit)  # type: ignore[attr-defined]
    if isinstance(value, asyncio.Future | asyncio.AbstractEventLoop):
        return type(value)
    if callable(value):
        return ("callable", getattr(value, "__qualname__", type(value)))
    return value


def _aiosmtpd_session(conversation: Conversation, tls: Any, implicit_tls: bool) -> _Session:
    """A ``_Session`` initialised by aiosmtpd's own ``SMTP.__init__``, with the arguments
    the listener passed it before the table existed."""
    session = _Session.__new__(_Session)
    session.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
    SMTP.__init__(
        session,
        conversation,
        data_size_limit=conversation._settings.max_message_size,
        hostname=conversation._settings.hostname,
        ident=_IDENT,
        tls_context=None if implicit_tls else tls,
        require_starttls=conversation.gate.requires_tls,
        timeout=conversation._settings.timeout,
        auth_require_tls=not implicit_tls,
        auth_exclude_mechanism=() if conversation.gate.log_in else ("LOGIN", "PLAIN"),
        loop=asyncio.get_running_loop(),
    )
    return session


@pytest.mark.parametrize(
    ("with_tls", "with_auth", "implicit_tls"),
    [(False, False, False), (True, False, False), (True, True, False), (True, True, True)],
)
def test_table_session_equals_aiosmtpds(
    tls: Tls, with_tls: bool, with_auth: bool, implicit_tls: bool
) -> None:
    """Every attribute aiosmtpd's __init__ sets is the same when the table builds the session."""
    context = tls.server() if with_tls else None
    authenticate = (lambda user, password: False) if with_auth else None
    gate = RelayGate(tuple(LOOPBACK), check_recipient, sender_allowed, authenticate)
    settings = listener_settings(context)
    conversation = Conversation(settings, gate, Inbox())

    async def both() -> tuple[_Session, _Session]:
        table = command_table(_Session, conversation)
        ours = _Session(conversation, settings, set(), implicit_tls, table)
        return ours, _aiosmtpd_session(conversation, context, implicit_tls)

    ours, theirs = run(both())
    expected = {name: _normal(value, theirs) for name, value in vars(theirs).items()}
    got = {name: _normal(getattr(ours, name), ours) for name in expected}
    assert got == expected
    assert list(ours._smtp_methods) == list(theirs._smtp_methods)
    assert list(ours._auth_methods) == list(theirs._auth_methods) != [] or not with_auth


def test_ehlo_reply_and_help_are_aiosmtpds(tls: Tls) -> None:
    """EHLO's lines (written at once) are aiosmtpd's with PIPELINING, and HELP's list of
    commands is as aiosmtpd gives it."""

    async def body(listener: Listener) -> tuple[str, str, str]:
        client = await RawClient.connect(listener.port)
        await client.reply()
        ehlo = await client.command("EHLO client.agency.govt.nz")
        help_all, help_ehlo = await client.command("HELP"), await client.command("HELP EHLO")
        await client.close()
        return ehlo, help_all, help_ehlo

    gate_settings = listener_settings(tls.server())
    start = start_relay_listener(
        gate_settings,
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=Inbox(),
    )
    ehlo, help_all, help_ehlo = run(with_listener(start, body))
    size = gate_settings.max_message_size
    expected = ["250-mx.agency.govt.nz", "250-PIPELINING", f"250-SIZE {size}", "250-8BITMIME"]
    assert ehlo.split("\n") == [*expected, "250-STARTTLS", "250 HELP"]
    assert (
        help_all == "250 Supported commands: AUTH EHLO HELO HELP NOOP QUIT RCPT RSET STARTTLS VRFY"
    )
    assert help_ehlo == "250 Syntax: EHLO hostname"
