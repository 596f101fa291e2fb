"""``securemail smime``: protect, unprotect, and signed receipts, for operators and interop tests.

Exit status: 0 done, 1 refused (``error: <reason-code>: <detail>`` on stderr), 2 usage error.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from securemail.cli import files
from securemail.smime import (
    ProtectOptions,
    ReceiptBasis,
    ReceiptRequest,
    RecipientIdentity,
    SecurityLabel,
    SignerIdentity,
    SmimeError,
    TrustStore,
    Unprotected,
    limits,
    make_receipt,
    mime,
    protect,
    receipt_entity,
    sign_message,
    unprotect,
    verify,
    verify_receipt,
)
from securemail.smime import labels as label_values

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def smime() -> None:
    """Sign, encrypt, decrypt and verify S/MIME messages and receipts (SecureMail profile)."""


def _now(at: datetime | None) -> datetime:
    return datetime.now(UTC) if at is None else at.replace(tzinfo=at.tzinfo or UTC)


AT = click.option(
    "--at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="Validate or sign as of this UTC time (default: now).",
)


def _trust_options(func: Any) -> Any:
    func = click.option(
        "--no-revocation-check",
        is_flag=True,
        help="Accept signers no CRL covers (revoked ones still fail).",
    )(func)
    func = click.option(
        "--crl",
        "crls",
        multiple=True,
        type=FILE,
        help="CRL (PEM or DER) of the federation CA; repeatable.",
    )(func)
    return click.option(
        "--trust-anchor",
        "anchors",
        multiple=True,
        type=FILE,
        required=True,
        help="Federation root certificate(s) (PEM); repeatable.",
    )(func)


def _trust(anchors: tuple[Path, ...], crls: tuple[Path, ...], no_check: bool) -> TrustStore:
    loaded = []
    for path in crls:
        data = path.read_bytes()
        try:
            loaded.append(
                x509.load_pem_x509_crl(data)
                if b"-----BEGIN" in data
                else x509.load_der_x509_crl(data)
            )
        except ValueError as exc:
            raise click.UsageError(f"{path}: not a CRL ({exc})") from None
    return TrustStore(files.load_certs(anchors), loaded, require_revocation=not no_check)


@smime.command("protect")
@click.option("--signer-cert", type=FILE, required=True, help="Signing certificate (PEM/DER).")
@click.option("--signer-key", type=FILE, required=True, help="Its private key (PEM/DER).")
@click.option(
    "--chain", "chain", multiple=True, type=FILE, help="Intermediate CA certificate(s) to include."
)
@click.option(
    "--recipient-cert",
    "recipients",
    multiple=True,
    type=FILE,
    help="Receiving gateway's encryption certificate; repeatable.",
)
@click.option(
    "--cipher",
    type=click.Choice(["aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc"]),
    default="aes256-gcm",
    show_default=True,
    help="Content encryption; CBC only for legacy peers.",
)
@click.option(
    "--digest",
    type=click.Choice(["sha256", "sha384", "sha512"]),
    default="sha256",
    show_default=True,
)
@click.option("--pss", is_flag=True, help="Sign with RSA-PSS instead of PKCS#1 v1.5.")
@click.option(
    "--label",
    type=click.Choice(list(label_values.CLASSIFICATIONS)),
    help="ESS security label classification.",
)
@click.option("--privacy-mark", help="ESS privacy mark, e.g. PERSONAL.")
@click.option(
    "--receipt-to",
    "receipt_to",
    multiple=True,
    metavar="ADDRESS",
    help="Request a signed receipt, sent to ADDRESS; repeatable.",
)
@click.option(
    "--receipt-basis",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write what is needed to verify the receipt later (JSON) to this file.",
)
@click.option(
    "--inner-binary",
    is_flag=True,
    help="Binary inner entity (only for peers whose directory entry lists inner-binary; "
    "the default base64 is what every S/MIME stack reads).",
)
@click.option("--sign-only", is_flag=True, help="Sign but do not encrypt.")
@files.passphrase_options
@AT
@click.argument("message", default="-")
@click.option("-o", "--output", default="-", help="Output file (default: stdout).")
def protect_command(
    signer_cert: Path,
    signer_key: Path,
    chain: tuple[Path, ...],
    recipients: tuple[Path, ...],
    cipher: Any,
    digest: Any,
    pss: bool,
    label: str | None,
    privacy_mark: str | None,
    receipt_to: tuple[str, ...],
    receipt_basis: Path | None,
    inner_binary: bool,
    sign_only: bool,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    at: datetime | None,
    message: str,
    output: str,
) -> None:
    """Sign MESSAGE (RFC 5322, file or - for stdin), then encrypt it to the recipients."""
    if not recipients and not sign_only:
        raise click.UsageError("give --recipient-cert (or --sign-only)")
    try:
        signer = SignerIdentity(
            files.load_cert(signer_cert),
            files.load_key(signer_key, files.read_passphrase(passphrase_env, passphrase_file)),
            tuple(files.load_certs(chain)),
        )
        options = ProtectOptions(
            cipher=cipher,
            digest=digest,
            rsa_padding="pss" if pss else "pkcs1v15",
            label=_label(label, privacy_mark),
            receipt_request=ReceiptRequest(os.urandom(16), receipt_to) if receipt_to else None,
            inner_encoding="binary" if inner_binary else "base64",
        )
        data = files.read_input(message)
        if sign_only:
            result = sign_message(data, signer, now=_now(at), options=options)
        else:
            result = protect(
                data, signer, files.load_certs(recipients), now=_now(at), options=options
            )
    except SmimeError as error:
        files.fail(error)
        return
    files.write_output(output, result.message)
    if receipt_basis is not None and result.receipt_basis is not None:
        files.write_output(str(receipt_basis), result.receipt_basis.to_json().encode())


def _label(label: str | None, privacy_mark: str | None) -> SecurityLabel | None:
    if label is None and privacy_mark is None:
        return None
    try:
        return SecurityLabel(label, privacy_mark)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _identities(
    certs: tuple[Path, ...], keys: tuple[Path, ...], passphrase: bytes | None
) -> list[RecipientIdentity]:
    if len(certs) != len(keys):
        raise click.UsageError("give one --key for each --cert")
    return [
        RecipientIdentity(files.load_cert(c), files.load_key(k, passphrase))
        for c, k in zip(certs, keys, strict=True)
    ]


@smime.command("unprotect")
@click.option(
    "--cert",
    "certs",
    multiple=True,
    type=FILE,
    help="Our decryption certificate; repeatable (e.g. during key rollover).",
)
@click.option("--key", "keys", multiple=True, type=FILE, help="Its private key; one per --cert.")
@_trust_options
@click.option("--require-encryption", is_flag=True, help="Refuse signed-only messages.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print what was verified as one JSON object on stderr."
)
@files.passphrase_options
@AT
@click.argument("message", default="-")
@click.option("-o", "--output", default="-", help="Where to write the verified message.")
def unprotect_command(
    certs: tuple[Path, ...],
    keys: tuple[Path, ...],
    anchors: tuple[Path, ...],
    crls: tuple[Path, ...],
    no_revocation_check: bool,
    require_encryption: bool,
    as_json: bool,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    at: datetime | None,
    message: str,
    output: str,
) -> None:
    """Decrypt and verify MESSAGE; write the signed original only if every check passes."""
    try:
        identities = _identities(
            certs, keys, files.read_passphrase(passphrase_env, passphrase_file)
        )
        result = unprotect(
            files.read_input(message),
            identities=identities,
            trust=_trust(anchors, crls, no_revocation_check),
            now=_now(at),
            require_encryption=require_encryption,
        )
    except SmimeError as error:
        files.fail(error)
        return
    files.write_output(output, result.content)
    if as_json:
        click.echo(json.dumps(describe(result), sort_keys=True), err=True)


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.RFC822Name), san.get_values_for_type(x509.DNSName)


def describe_certificate(cert: x509.Certificate) -> dict[str, Any]:
    emails, domains = _names(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "emails": emails,
        "domains": domains,
    }


def describe(result: Unprotected) -> dict[str, Any]:
    """The evidence of an unprotected message as plain JSON-ready data."""
    sig = result.signature
    request = sig.receipt_request
    return {
        "status": "verified",
        "signer": describe_certificate(sig.signer),
        "trust_anchor": result.path.anchor.subject.rfc4514_string(),
        "digest_algorithm": sig.digest_algorithm,
        "signature_algorithm": sig.signature_algorithm,
        "signing_time": sig.signing_time.isoformat() if sig.signing_time else None,
        "encrypted": result.encryption is not None,
        "content_encryption": result.encryption.content_encryption if result.encryption else None,
        "key_management": result.encryption.key_management if result.encryption else None,
        "label": None
        if sig.label is None
        else {
            "classification": sig.label.classification,
            "privacy_mark": sig.label.privacy_mark,
            "policy": sig.label.policy,
            "marking": sig.label.marking,
        },
        "receipt_request": None
        if request is None
        else {
            "content_identifier": request.content_identifier.hex(),
            "receipts_to": list(request.receipts_to),
            "first_tier_only": request.first_tier_only,
        },
    }


@smime.command("receipt")
@click.option("--cert", "certs", multiple=True, type=FILE, help="Our decryption certificate.")
@click.option("--key", "keys", multiple=True, type=FILE, help="Its private key; one per --cert.")
@click.option("--signer-cert", type=FILE, help="Receipt signing certificate (default: --cert).")
@click.option("--signer-key", type=FILE, help="Its private key (default: --key).")
@_trust_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["smime", "der"]),
    default="smime",
    show_default=True,
    help="An S/MIME signed-receipt entity, or bare DER.",
)
@files.passphrase_options
@AT
@click.argument("message", default="-")
@click.option("-o", "--output", default="-", help="Where to write the receipt.")
def receipt_command(
    certs: tuple[Path, ...],
    keys: tuple[Path, ...],
    signer_cert: Path | None,
    signer_key: Path | None,
    anchors: tuple[Path, ...],
    crls: tuple[Path, ...],
    no_revocation_check: bool,
    fmt: str,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    at: datetime | None,
    message: str,
    output: str,
) -> None:
    """Verify MESSAGE (which must request a receipt) and write its signed receipt."""
    passphrase = files.read_passphrase(passphrase_env, passphrase_file)
    cert_path = signer_cert or (certs[0] if certs else None)
    key_path = signer_key or (keys[0] if keys else None)
    if cert_path is None or key_path is None:
        raise click.UsageError("give --signer-cert and --signer-key (or --cert and --key)")
    try:
        result = unprotect(
            files.read_input(message),
            identities=_identities(certs, keys, passphrase),
            trust=_trust(anchors, crls, no_revocation_check),
            now=_now(at),
        )
        signer = SignerIdentity(files.load_cert(cert_path), files.load_key(key_path, passphrase))
        receipt = make_receipt(result.signature, signer, now=_now(at))
    except SmimeError as error:
        files.fail(error)
        return
    files.write_output(output, receipt if fmt == "der" else receipt_entity(receipt))


def _basis(path: Path) -> ReceiptBasis:
    """A receipt basis from protect's JSON, or from the original signed message itself."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        return ReceiptBasis.from_json(data)
    bounds = limits.Limits()
    der = data if data[:1] == b"\x30" else mime.read_entity(data, bounds).der
    limits.check_der(der, bounds)
    _, signature = verify.verify_signed_data(der)
    return ReceiptBasis.of(signature)


@smime.command("verify-receipt")
@click.option(
    "--original",
    type=FILE,
    required=True,
    help="protect's --receipt-basis JSON, or the original signed message.",
)
@_trust_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@AT
@click.argument("receipt", default="-")
def verify_receipt_command(
    original: Path,
    anchors: tuple[Path, ...],
    crls: tuple[Path, ...],
    no_revocation_check: bool,
    as_json: bool,
    at: datetime | None,
    receipt: str,
) -> None:
    """Check that RECEIPT (S/MIME or DER) is a trusted signed receipt for the original."""
    try:
        verified = verify_receipt(
            files.read_input(receipt),
            _basis(original),
            trust=_trust(anchors, crls, no_revocation_check),
            now=_now(at),
        )
    except SmimeError as error:
        files.fail(error)
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "receipt-verified",
                    "signer": describe_certificate(verified.signer),
                    "signing_time": verified.signing_time.isoformat()
                    if verified.signing_time
                    else None,
                    "content_identifier": verified.content_identifier.hex(),
                },
                sort_keys=True,
            )
        )
    else:
        subject = verified.signer.subject.rfc4514_string()
        click.echo(f"receipt verified: signed by {subject}")
