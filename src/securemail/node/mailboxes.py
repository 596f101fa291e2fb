"""A mail service provider's part of a node: its accounts, and IMAP to their Maildirs.

A node opens its accounts when it hosts mailboxes for people: an organisation delivers to
Maildirs with ``accounts = true``, or ``[submission]``, ``[imap]`` or ``[web]`` is
configured. The
accounts live in the node's database (the queue's migration chain) and log their events to
``<data_dir>/accounts.log``; one :class:`securemail.accounts.model.Authenticator` serves
SMTP submission and IMAP, so their throttles are shared.

Security: the accounts' TOTP secrets are sealed under the node passphrase. IMAP serves only
the Maildir of the organisation that owns the account's primary domain, below that
organisation's delivery root.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from securemail.accounts.events import ACCOUNTS_LOG
from securemail.accounts.node import Accounts, open_accounts
from securemail.config.node import NodeConfig
from securemail.config.reasons import NodeReason
from securemail.deliver.maildir import mailbox_path
from securemail.imap import ImapServer, MaildirFor, start_imap
from securemail.node.context import NodeError
from securemail.node.listeners import cannot_listen, server_tls


def hosts_mailboxes(config: NodeConfig) -> bool:
    """Whether the node serves people's mailboxes, and so needs its accounts open."""
    uses_accounts = any(o.delivery.accounts for o in config.organisations)
    clients = (config.submission, config.imap, config.web)
    return uses_accounts or any(c is not None for c in clients)


async def open_node_accounts(
    config: NodeConfig, passphrase: bytes, clock: Callable[[], datetime]
) -> Accounts | None:
    """The node's accounts, or None when it hosts no mailboxes (see :func:`hosts_mailboxes`)."""
    if not hosts_mailboxes(config):
        return None
    return await asyncio.to_thread(
        open_accounts,
        config.database,
        log_path=config.data_dir / ACCOUNTS_LOG,
        passphrase=passphrase,
        domains=config.domains,
        clock=clock,
    )


def maildir_for(config: NodeConfig) -> MaildirFor:
    """Primary address -> its Maildir under the delivery root of the organisation serving it."""

    def lookup(primary: str) -> Path | None:
        org = config.organisation_for(primary.rpartition("@")[2])
        if org is None or org.delivery.kind != "maildir" or org.delivery.path is None:
            return None
        return mailbox_path(org.delivery.path, primary)

    return lookup


async def start_node_imap(config: NodeConfig, accounts: Accounts) -> ImapServer | None:
    """Serve IMAP as ``[imap]`` says, or nothing if it is not configured."""
    imap = config.imap
    if imap is None:
        return None
    tls = server_tls(config, imap.tls_certificate, imap.tls_key)
    listen = None if imap.listen is None else (imap.listen.host, imap.listen.port)
    tls_listen = None if imap.tls_listen is None else (imap.tls_listen.host, imap.tls_listen.port)
    try:
        return await start_imap(
            accounts.authenticator,
            maildir_for(config),
            tls,
            listen=listen,
            tls_listen=tls_listen,
            name=config.name,
            seal=accounts.mailbox_seal,
        )
    except OSError as error:
        raise NodeError(NodeReason.LISTEN_FAILED, cannot_listen(error, "[imap]")) from None
