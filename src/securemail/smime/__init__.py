"""The S/MIME protection core: pure functions from bytes and keys to bytes and verdicts.

No sockets, no database, no clock: callers pass ``now``. Entry points:

- :func:`protect` / :func:`sign_message` — sign, then encrypt, a whole RFC 5322 message.
- :func:`unprotect` — decrypt, verify, validate; returns exactly the signed bytes.
- :func:`make_receipt` / :func:`verify_receipt` — RFC 2634 signed receipts.

Every refusal is a :class:`SmimeError` with a stable :class:`Reason` code.
"""

from securemail.smime.assurance import IdentityCheck, SenderAssurance
from securemail.smime.attributes import ReceiptRequest, SealedFor
from securemail.smime.errors import Reason, SmimeError
from securemail.smime.keys import RecipientIdentity, SignerIdentity
from securemail.smime.labels import SecurityLabel
from securemail.smime.limits import Limits
from securemail.smime.message import (
    Protected,
    ProtectOptions,
    Unprotected,
    clear_sign,
    protect,
    sign_message,
    unprotect,
)
from securemail.smime.receipts import (
    ReceiptBasis,
    VerifiedReceipt,
    make_receipt,
    receipt_entity,
    verify_receipt,
)
from securemail.smime.trust import TrustStore, ValidatedPath

__all__ = [
    "IdentityCheck",
    "Limits",
    "ProtectOptions",
    "Protected",
    "Reason",
    "ReceiptBasis",
    "ReceiptRequest",
    "RecipientIdentity",
    "SealedFor",
    "SecurityLabel",
    "SenderAssurance",
    "SignerIdentity",
    "SmimeError",
    "TrustStore",
    "Unprotected",
    "ValidatedPath",
    "VerifiedReceipt",
    "clear_sign",
    "make_receipt",
    "protect",
    "receipt_entity",
    "sign_message",
    "unprotect",
    "verify_receipt",
]
