"""IMAP login through the shared Authenticator, and the account's Maildir as the session.

pymap asks a login object to authenticate SASL credentials (LOGIN and AUTHENTICATE PLAIN
both arrive as ``PlainCredentials``) and the resulting identity for a session. Here the
secret goes to :meth:`securemail.accounts.model.Authenticator.login` with
``Service.IMAP`` and the client's IP address, and the session is pymap's own Maildir
backend (``MailboxSet`` over the ``++`` layout) opened on the Maildir the account's primary
address maps to, with ``$SecureMail`` kept the gateway's alone (:mod:`securemail.imap.folders`).
The Maildir and its special-use folders (:mod:`securemail.deliver.folders`) are created at
login when missing, and ``$SecureMail`` is defined in its
``dovecot-keywords`` (and in each folder), so clients see the keyword in FLAGS before the
first verified message arrives.

Security: the name and secret are untrusted. Every refusal except a throttle gives the
same answer, RFC 5530 ``[AUTHENTICATIONFAILED] Invalid credentials.``, so a client never
learns whether the name exists, the account is disabled or it needs an app password; the
reason is logged, never the secret. A throttle says to try later (``[UNAVAILABLE]``). A
client cannot log in as another identity (a PLAIN authzid must be its own name), and the
Maildir opened comes from the account, never from anything the client sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Set
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from pymap.backend.maildir.layout import MaildirLayout
from pymap.backend.maildir.mailbox import MailboxSet, Message
from pymap.backend.session import BaseSession
from pymap.config import IMAPConfig
from pymap.context import socket_info
from pymap.exceptions import AuthorizationFailure, InvalidAuth, NotAllowedError, ResponseError
from pymap.interfaces.login import IdentityInterface, LoginInterface
from pymap.interfaces.token import TokenCredentials, TokensInterface
from pymap.parsing.response import ResponseCode, ResponseNo
from pymap.user import UserMetadata
from pysasl.creds.plain import PlainCredentials
from pysasl.creds.server import ServerCredentials
from pysasl.identity import Identity

from securemail.accounts.model import Account, AccountReason, Authenticator, Denied, Service
from securemail.deliver.folders import ensure_special_folders
from securemail.deliver.keywords import keyword_letters
from securemail.deliver.seal import MailboxSeal
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.imap.folders import PrivateMaildir, SealedFolders

MaildirFor = Callable[[str], Path | None]
"""Primary address to the Maildir that holds its mail, or None if not hosted here."""

_log = logging.getLogger(__name__)
_REFUSED = "Invalid credentials."


class AccountLogin(LoginInterface):
    """pymap's login seam over the shared :class:`Authenticator` (see the module doc)."""

    def __init__(
        self,
        authenticator: Authenticator,
        maildir_for: MaildirFor,
        config: IMAPConfig,
        seal: MailboxSeal,
    ) -> None:
        self._authenticator, self._maildir_for, self._config = authenticator, maildir_for, config
        self._seal = seal

    @property
    def tokens(self) -> TokensInterface:
        return _NoTokens()

    async def authenticate(self, credentials: ServerCredentials) -> AccountIdentity:
        offered = _OfferedSecret()
        if not isinstance(credentials, PlainCredentials) or not credentials.verify(offered):
            raise InvalidAuth(_REFUSED)
        source = _client_ip()
        result = await self._authenticator.login(
            credentials.authcid, offered.secret, service=Service.IMAP, source=source
        )
        if isinstance(result, Denied):
            _log.info("imap login refused from %s: %s", source, result.reason.value)
            raise _refusal(result)
        _log.info("imap login %s from %s (%s)", result.account.name, source, result.method)
        return AccountIdentity(
            result.account, credentials.authcid, self._maildir_for, self._config, self._seal
        )

    async def authorize(self, authenticated: IdentityInterface, authzid: str) -> IdentityInterface:
        """Only as itself: ``authzid`` must be the name it logged in with."""
        if not isinstance(authenticated, AccountIdentity):
            raise AuthorizationFailure()
        if authzid.lower() != authenticated.login.lower():
            raise AuthorizationFailure()
        return authenticated


class AccountIdentity(IdentityInterface):
    """A logged-in account; its session is its Maildir. Account data is not changed here."""

    def __init__(
        self,
        account: Account,
        login: str,
        maildir_for: MaildirFor,
        config: IMAPConfig,
        seal: MailboxSeal,
    ) -> None:
        self.account, self.login = account, login
        self._maildir_for, self._config, self._seal = maildir_for, config, seal

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def roles(self) -> frozenset[str]:
        return frozenset()

    @asynccontextmanager
    async def new_session(self) -> AsyncIterator[AccountSession]:
        path = self._maildir_for(self.account.primary)
        if path is None:
            _log.warning("imap: no Maildir for %s on this node", self.account.primary)
            raise _UnavailableError("Mailbox not available here.")
        await asyncio.to_thread(_prepare, path)
        inbox = PrivateMaildir(str(path), create=False)
        layout = MaildirLayout.get(str(path), "++", PrivateMaildir)
        folders = SealedFolders(inbox, layout, self._seal, self.account.primary)
        yield AccountSession(self.name, self._config, folders, path, self.account.quota)

    async def new_token(self, *, expiration: datetime | None = None) -> str | None:
        return None  # bearer tokens are not offered: every login goes through the Authenticator

    async def get(self) -> UserMetadata:
        raise NotAllowedError("Accounts are managed by SecureMail.")

    async def set(self, metadata: UserMetadata) -> int | None:
        raise NotAllowedError("Accounts are managed by SecureMail.")

    async def delete(self) -> None:
        raise NotAllowedError("Accounts are managed by SecureMail.")


class AccountSession(BaseSession[Message]):
    """pymap's session over an account's Maildir folders; ``maildir`` and ``quota`` (octets,
    None for none) are what GETQUOTA reports (:mod:`securemail.imap.extensions`)."""

    def __init__(
        self, owner: str, config: IMAPConfig, folders: MailboxSet, maildir: Path, quota: int | None
    ) -> None:
        super().__init__(owner)
        self._config, self._folders = config, folders
        self.maildir, self.quota = maildir, quota

    @property
    def config(self) -> IMAPConfig:
        return self._config

    @property
    def mailbox_set(self) -> MailboxSet:
        return self._folders


def _prepare(path: Path) -> None:
    """Create the Maildir and its special-use folders if missing, and define ``$SecureMail``
    in it and its folders."""
    ensure_special_folders(path)
    keyword_letters(path, [SECUREMAIL_KEYWORD])
    for folder in path.iterdir():
        if folder.name.startswith(".") and (folder / "tmp").is_dir():
            keyword_letters(folder, [SECUREMAIL_KEYWORD])


class _OfferedSecret(Identity):
    """pysasl shows a client's secret only to ``Identity.compare_secret``: this keeps it, so
    the one login check (the Authenticator) can judge it. It never says yes by itself."""

    secret = ""

    @property
    def authcid(self) -> str:
        return ""

    def compare_authcid(self, authcid: str) -> bool:
        return True

    def compare_secret(self, secret: str) -> bool:
        self.secret = secret
        return True

    def get_clear_secret(self) -> str | None:
        return None


class _NoTokens(TokensInterface):
    """Bearer tokens are not offered (pymap's admin API is not run)."""

    def get_login_token(
        self,
        identifier: str,
        authcid: str,
        key: bytes,
        *,
        authzid: str | None = None,
        location: str | None = None,
        expiration: datetime | None = None,
    ) -> str | None:
        return None

    def get_admin_token(
        self,
        admin_key: bytes | None,
        *,
        authzid: str | None = None,
        location: str | None = None,
        expiration: datetime | None = None,
    ) -> str | None:
        return None

    def parse(
        self, authzid: str, token: str, *, admin_keys: Set[bytes] = frozenset()
    ) -> TokenCredentials:
        raise ValueError("bearer tokens are not accepted")


class _UnavailableError(ResponseError):
    """A temporary refusal: RFC 5530 ``[UNAVAILABLE]``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._text = text.encode()

    def get_response(self, tag: bytes) -> ResponseNo:
        return ResponseNo(tag, self._text, ResponseCode.of(b"UNAVAILABLE"))


def _refusal(denied: Denied) -> ResponseError:
    if denied.reason is AccountReason.THROTTLED:
        return _UnavailableError("Too many failed logins; try again later.")
    return InvalidAuth(_REFUSED)


def _client_ip() -> str:
    ip = socket_info.get().peername_ip
    return "unknown" if ip is None else str(ip)
