"""What aiosmtpd's ``SMTP.__init__`` finds by introspection, found once per listener.

aiosmtpd 1.4 walks the session class and its handler with ``inspect.getmembers`` and
``dir`` on every new connection to build three tables: the ``smtp_*`` command methods,
the ``auth_*`` mechanisms and the handler's ``handle_*`` hooks (and it reads the EHLO
hook's signature). They depend only on the session class and the handler, so
:func:`command_table` builds them once, by the same rules, and :func:`bind` gives each
session its own copies bound to it, as aiosmtpd's own would be.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthMechanismType, _AuthMechAttr


@dataclass(frozen=True)
class CommandTable:
    """The introspected tables of one session class with one handler.

    ``commands``: (command, method name) for each ``smtp_*`` method, in ``dir`` order.
    ``mechanisms``: (mechanism, method name, the handler's bound method or None for the
    session's own) in aiosmtpd's order, before ``auth_exclude_mechanism`` is applied.
    """

    commands: tuple[tuple[str, str], ...]
    mechanisms: tuple[tuple[str, str, AuthMechanismType | None], ...]
    hooks: dict[str, Callable[..., Any]]
    ehlo_hook_version: Literal["old", "new"] | None


def _mechanisms(
    cls: type[SMTP], handler: object
) -> tuple[tuple[str, str, AuthMechanismType | None], ...]:
    found: dict[str, tuple[str, AuthMechanismType | None]] = {}
    for owner in (cls, handler):
        for name, method in inspect.getmembers(owner):
            if not name.startswith("auth_"):
                continue
            default = name.replace("auth_", "").replace("__", "-")
            mechanism = getattr(method, "__auth_mechanism_name__", default)
            found[mechanism] = (name, None if owner is cls else method)
    return tuple((mechanism, name, method) for mechanism, (name, method) in found.items())


def _ehlo_hook_version(hooks: dict[str, Callable[..., Any]]) -> Literal["old", "new"] | None:
    """As aiosmtpd decides it (its deprecation warning for the 4-argument form aside)."""
    hook = hooks.get("EHLO")
    if hook is None:
        return None
    count = len(inspect.signature(hook).parameters)
    if count == 4:
        return "old"
    if count == 5:
        return "new"
    raise RuntimeError("Unsupported EHLO Hook")


def command_table(cls: type[SMTP], handler: object) -> CommandTable:
    """The tables aiosmtpd 1.4.6's ``SMTP.__init__`` builds for ``cls`` and ``handler``."""
    hooks = {
        name.replace("handle_", ""): getattr(handler, name)
        for name in dir(handler)
        if name.startswith("handle_")
    }
    commands = tuple(
        (name.replace("smtp_", ""), name) for name in dir(cls) if name.startswith("smtp_")
    )
    return CommandTable(commands, _mechanisms(cls, handler), hooks, _ehlo_hook_version(hooks))


def bind(
    table: CommandTable, session: SMTP, excluded: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, _AuthMechAttr], dict[str, Callable[..., Any]]]:
    """``session``'s own command methods, AUTH mechanisms and handler hooks."""
    commands = {command: getattr(session, name) for command, name in table.commands}
    mechanisms = {
        mechanism: _AuthMechAttr(getattr(session, name), True)
        if method is None
        else _AuthMechAttr(method, False)
        for mechanism, name, method in table.mechanisms
        if mechanism not in excluded
    }
    return commands, mechanisms, dict(table.hooks)
