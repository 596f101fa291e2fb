"""IMAP access to the hosted mailboxes, served by pymap over the accounts' Maildirs."""

from securemail.imap.login import MaildirFor
from securemail.imap.server import ImapServer, start_imap

__all__ = ["ImapServer", "MaildirFor", "start_imap"]
