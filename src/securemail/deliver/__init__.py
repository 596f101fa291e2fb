"""Deliver: put verified inbound mail into its recipients' stores.

:class:`Target` is the contract; :class:`MaildirTarget` stores into Maildir folders the
node hosts, :class:`SmtpTarget` hands mail to the organisation's own server over SMTP or
LMTP. Each attempt returns one Reply per recipient; the queue worker records them.
"""

from securemail.deliver.maildir import MaildirTarget
from securemail.deliver.smtp import SmtpTarget
from securemail.deliver.target import Target

__all__ = ["MaildirTarget", "SmtpTarget", "Target"]
