"""The node a ``securemail user`` command works on: its config, and its accounts opened.

Every ``securemail user`` command opens the node's database directly (running node or
not) through :func:`open_node_accounts`; the group's options (``--config``,
``--breached-passwords``) reach it in :class:`UserOptions` on the click context.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from securemail.accounts.events import ACCOUNTS_LOG
from securemail.accounts.node import open_accounts
from securemail.accounts.service import AccountService
from securemail.cli.files import fail, refuse_missing_database
from securemail.cli.serve import read_config
from securemail.config.node import NodeConfig
from securemail.errors import SecureMailError
from securemail.node.context import read_passphrase


@dataclass(frozen=True)
class UserOptions:
    config: Path | None
    breached: Path | None


@contextmanager
def open_node_accounts(*, read_only: bool = False) -> Iterator[tuple[NodeConfig, AccountService]]:
    """The node's config and account service. ``read_only``: the data folder and database
    must already be there (a wrong ``data_dir`` is an error, not a new empty node)."""
    options = click.get_current_context().find_object(UserOptions)
    if options is None or options.config is None:
        raise click.UsageError("securemail user needs --config FILE (or $SECUREMAIL_CONFIG)")
    config = read_config(options.config)
    if read_only:
        refuse_missing_database(config)
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # as serve would
    try:
        with open_accounts(
            config.database,
            log_path=config.data_dir / ACCOUNTS_LOG,
            passphrase=read_passphrase(config),
            domains=config.domains,
            breached_passwords=options.breached,
        ) as accounts:
            yield config, accounts.service
    except SecureMailError as error:
        fail(error)
    except ValueError as error:
        click.echo(f"error: bad-value: {error}", err=True)
        sys.exit(1)
