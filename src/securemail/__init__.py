"""SecureMail: signed, encrypted, receipted mail between the members of a federation."""

__version__ = "0.1.0"
