"""An organisation a node serves, with its keys opened: what the roles sign and decrypt with."""

from __future__ import annotations

from dataclasses import dataclass

from securemail.config.node import Organisation
from securemail.smime import RecipientIdentity, SignerIdentity


@dataclass(frozen=True)
class OrgKeys:
    """One organisation this node serves, with its signing and decryption keys."""

    organisation: Organisation
    signer: SignerIdentity
    identities: tuple[RecipientIdentity, ...]
