"""The evidence bundle: a folder from which anyone can check a message's receipts offline.

The folder holds the original SignedData (``original.p7m``), the federation's trust anchors
(``federation-ca.pem``), its CRLs when given (``crl.pem``), each receipt
(``receipt-<n>.der``) with its evidence (``evidence-<n>.json``), and a README that says what
each file is, what a receipt proves and does not, and the exact ``openssl cms
-verify_receipt`` command per receipt. Each command checks the certificates as they stood
when the receipt was signed (``-attime``), because an auditor may read the bundle long
after they expired; it checks revocation only when ``crl.pem`` was in force at that time,
because OpenSSL refuses a CRL issued after the time it checks at.

Security: the receipts, evidence and original are parsed before anything is written (a
signature that does not even verify against its own certificate is refused). The folder
must be new or empty (a new one is 0700), every file is created exclusively with mode 0600
(the original is the signed cleartext; :func:`securemail.durable.write_new`), and values
copied into the README lose control characters and backticks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from securemail.durable import PRIVATE_FOLDER, write_new
from securemail.evidence import Evidence, EvidenceError, EvidenceReason, rfc3339
from securemail.smime import oids
from securemail.smime.errors import SmimeError
from securemail.smime.verify import Signature, verify_signed_data

ORIGINAL = "original.p7m"
ANCHORS = "federation-ca.pem"
CRLS = "crl.pem"
README = "README.md"
_MAX_LITERAL = 200


@dataclass(frozen=True)
class _Receipt:
    """One receipt as the README describes it."""

    number: int
    der: bytes
    evidence_json: bytes
    evidence: Evidence
    signer: x509.Certificate
    signed_at: datetime

    @property
    def name(self) -> str:
        return f"receipt-{self.number}.der"

    @property
    def evidence_name(self) -> str:
        return f"evidence-{self.number}.json"


def write_bundle(
    folder: Path,
    *,
    message_id: str,
    original_signed_data: bytes,
    receipts: Sequence[tuple[str, bytes, bytes]],
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] = (),
) -> list[Path]:
    """Write the bundle into ``folder`` (new or empty); return the paths written.

    ``receipts`` holds (recipient, receipt DER, evidence JSON) per receipt.
    """
    if not anchors:
        raise ValueError("a bundle needs the federation's trust anchors")
    _read(original_signed_data, "original")
    parsed = [_receipt(n, *entry) for n, entry in enumerate(receipts, start=1)]
    files = {ORIGINAL: original_signed_data, ANCHORS: _pem(anchors)}
    if crls:
        files[CRLS] = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)
    for receipt in parsed:
        files[receipt.name] = receipt.der
        files[receipt.evidence_name] = receipt.evidence_json
    files[README] = readme(message_id, parsed, crls).encode("utf-8")
    folder.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise EvidenceError(EvidenceReason.BUNDLE_NOT_EMPTY, f"{folder} is not empty")
    return [_write(folder / name, data) for name, data in files.items()]


def _read(der: bytes, what: str) -> Signature:
    try:
        return verify_signed_data(der)[1]
    except SmimeError as exc:
        raise EvidenceError(EvidenceReason.MALFORMED, f"{what}: {exc.detail}") from None


def _receipt(number: int, recipient: str, der: bytes, evidence_json: bytes) -> _Receipt:
    signature = _read(der, f"receipt {number}")
    if signature.content_type != oids.ID_CT_RECEIPT:
        raise EvidenceError(EvidenceReason.MALFORMED, f"receipt {number} is not a receipt")
    evidence = Evidence.from_json(evidence_json)
    if evidence.recipient.casefold() != recipient.casefold():
        raise EvidenceError(EvidenceReason.MALFORMED, f"evidence {number} names another recipient")
    signed_at = signature.signing_time or evidence.delivered_at
    return _Receipt(number, der, evidence_json, evidence, signature.signer, signed_at)


def _pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _write(path: Path, data: bytes) -> Path:
    """Create ``path`` (never over an existing file or link), 0600: the original it holds is
    the signed cleartext of the message."""
    write_new(path, data)
    return path


def command(receipt: _Receipt, crls: Sequence[x509.CertificateRevocationList]) -> str:
    """The ``openssl cms -verify_receipt`` line for one receipt, run inside the bundle."""
    revocation = f" -CAstore {CRLS} -crl_check" if _covered(receipt, crls) else ""
    return (
        f"openssl cms -verify_receipt {receipt.name} -rctform DER -in {ORIGINAL} -inform DER"
        f" -CAfile {ANCHORS}{revocation} -attime {int(receipt.signed_at.timestamp())}"
    )


def _covered(receipt: _Receipt, crls: Sequence[x509.CertificateRevocationList]) -> bool:
    """Whether a CRL of the receipt signer's issuer was in force when it signed."""
    moment = receipt.signed_at
    return any(
        crl.issuer == receipt.signer.issuer
        and crl.last_update_utc <= moment
        and (crl.next_update_utc is None or moment <= crl.next_update_utc)
        for crl in crls
    )


def readme(
    message_id: str, receipts: Sequence[_Receipt], crls: Sequence[x509.CertificateRevocationList]
) -> str:
    """The README: the files, what a receipt proves and does not, and how to check each."""
    sections = [
        f"# SecureMail evidence for message `{_literal(message_id)}`\n",
        _FILES + (_CRL_FILE if crls else ""),
        _PROOF,
        "## How to check each receipt\n\n" + _HOW,
        *(_section(r, crls) for r in receipts),
    ]
    if not receipts:
        sections.append("No receipt was received for this message.\n")
    return "\n".join(sections)


def _section(receipt: _Receipt, crls: Sequence[x509.CertificateRevocationList]) -> str:
    evidence = receipt.evidence
    lines = [
        f"### Receipt {receipt.number}: `{_literal(evidence.recipient)}`\n",
        f"- `{receipt.name}`: signed by `{_literal(receipt.signer.subject.rfc4514_string())}`"
        f" at {rfc3339(receipt.signed_at)} (the time the signer states)",
        f"- `{receipt.evidence_name}`: delivered at {rfc3339(evidence.delivered_at)} by"
        f" `{_literal(evidence.receiving_org)}` (gateway `{_literal(evidence.receiving_gateway)}`)",
        "",
        "```sh",
        command(receipt, crls),
        "```",
        "",
    ]
    if crls and not _covered(receipt, crls):
        lines.append(f"`{CRLS}` was not in force when this receipt was signed, so this")
        lines.append("command does not check revocation.\n")
    return "\n".join(lines)


def _literal(text: str) -> str:
    """``text`` safe inside a Markdown code span: no control characters, no backticks."""
    cleaned = "".join(c if c.isprintable() and c != "`" else "?" for c in text)
    return cleaned[:_MAX_LITERAL]


_FILES = f"""\
## Files

| file | what it is |
|---|---|
| `{ORIGINAL}` | the original message as its sending gateway signed it: CMS SignedData (DER, \
RFC 5652) whose signed attributes carry the ESS receipt request (RFC 2634). It contains the \
original message in clear: keep this bundle as confidential as the message. |
| `{ANCHORS}` | the SecureMail federation's root certificate(s), PEM: what every \
gateway certificate must chain to. |
| `receipt-<n>.der` | a signed receipt (RFC 2634 §2): CMS SignedData (DER) by the gateway \
of the recipient's organisation, whose content names the original's signature. |
| `evidence-<n>.json` | what that gateway stated beside the receipt (RFC 8785 canonical \
JSON): the original Message-ID, the SHA-256 of the signed content, the receipt's content \
identifier, the recipient, the delivery time and the receiving organisation and gateway. |
"""
_CRL_FILE = f"""\
| `{CRLS}` | the federation's certificate revocation list(s), PEM. |
"""
_PROOF = """\
## What a receipt proves, and what it does not

A receipt that passes the command below proves that the holder of a gateway certificate \
issued by the federation signed a statement bound to exactly this original signature: it \
repeats the original's content identifier and signature value, and its msgSigDigest is the \
digest of the original's signed attributes, so it cannot be moved to another message. A \
SecureMail gateway signs one only after it decrypted the message, verified its signature \
and delivered it durably to the recipient's mail store.

It does not prove that anyone opened or read the message: it is not a read receipt. Its \
time is the one the receiving gateway states; no independent time-stamp backs it. The \
`evidence-<n>.json` files arrived inside the receiving gateway's signed message, but carry \
no signature of their own: only the receipts can be checked offline.
"""
_HOW = """\
Run each command inside this folder with OpenSSL 3.0 or later. It prints \
`Verification successful` and exits with status 0 only if the receipt is bound to \
`original.p7m`, its signature is valid and its signer's certificate chains to \
`federation-ca.pem`. `-attime` checks the certificates as they stood when the receipt was \
signed, since they may have expired since; `-CAstore crl.pem -crl_check`, where present, \
also checks that the signer's certificate was not revoked then.
"""
