"""IMAP access to the hosted mailboxes, served by pymap over the accounts' Maildirs."""

from securemail.imap.login import MaildirFor
from securemail.imap.server import ImapLimits, ImapServer, start_imap

__all__ = ["ImapLimits", "ImapServer", "MaildirFor", "start_imap"]
