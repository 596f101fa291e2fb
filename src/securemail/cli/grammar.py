"""One error form and one set of exit codes for every ``securemail`` command.

Every refusal is one line on stderr, ``error: <reason-code>: <detail>``, and never a
traceback for a mistake in the command line, the configuration or the environment:

    0  done
    1  refused, or a check failed (the reason code says which)
    2  usage: an unknown option or command, a missing or malformed argument
    130  interrupted (Ctrl-C)

Commands raise their own refusals through :func:`securemail.cli.files.fail` (exit 1);
this group turns click's usage errors (``usage``), its other exceptions (``failed``) and a
file the environment would not let us read or write (``unreadable``) into the same line.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import click

USAGE, FAILED, INTERRUPTED = 2, 1, 130


class Grammar(click.Group):
    """The top ``securemail`` group: click's errors in the one error form."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            outcome = super().main(*args, **kwargs)
        except click.UsageError as error:
            where = f" (see '{error.ctx.command_path} -h')" if error.ctx else ""
            _refuse("usage", _one_line(error.format_message()) + where, USAGE)
        except click.ClickException as error:
            _refuse("failed", _one_line(error.format_message()), error.exit_code or FAILED)
        except click.Abort:
            _refuse("interrupted", "stopped before it finished", INTERRUPTED)
        except OSError as error:
            if error.errno == errno.EPIPE:  # the reader went away (``| head``): not a mistake
                sys.exit(FAILED)
            where = f"{error.filename}: " if error.filename else ""
            _refuse("unreadable", f"{where}{error.strerror or error}", FAILED)
        sys.exit(outcome if isinstance(outcome, int) else 0)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _refuse(reason: str, detail: str, code: int) -> None:
    click.echo(f"error: {reason}: {detail}", err=True)
    sys.exit(code)
