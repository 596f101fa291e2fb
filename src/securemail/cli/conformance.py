"""``securemail conformance run``: test a member's gateway and write the signed report."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail.cli.files import fail, passphrase_options, read_passphrase
from securemail.conformance import ConformanceError, ConformanceReason
from securemail.conformance.cases import Tester
from securemail.conformance.report import report_document, sign_report, verdicts
from securemail.conformance.session import Kit, Run, Target, run_conformance
from securemail.directory.document import DirectoryError, verify_document
from securemail.durable import write_atomic
from securemail.keys.rollover import decryption_identities
from securemail.smime import SignerIdentity, SmimeError
from securemail.smime.keys import load_certificate, load_certificates, load_private_key

DIR = click.Path(file_okay=False, path_type=Path)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConformanceError(ConformanceReason.BAD_TARGET, f"{option} {text!r} is not HOST:PORT")
    return host, int(port)


@click.group()
def conformance() -> None:
    """Test a gateway against the SecureMail profile (docs/conformance.md)."""


@conformance.command("run")
@click.option("--target", required=True, help="HOST:PORT of the gateway under test.")
@click.option("--member", required=True, help="The org id the gateway serves.")
@click.option("--recipient", required=True, help="A test mailbox of the member.")
@click.option("--node-dir", required=True, type=DIR, help="The tester's node directory.")
@click.option("--tester", required=True, help="The tester's org id in the directory.")
@click.option("--directory", "document", required=True, type=click.Path(path_type=Path),
              help="directory.json (its signature beside it, .p7s).")  # fmt: skip
@click.option("--listen", required=True, help="HOST:PORT of the tester's directory endpoint.")
@click.option("--wait", default=120.0, show_default=True, help="Seconds to wait for answers.")
@click.option("--out", required=True, type=DIR, help="Folder for the report (must not exist).")
@passphrase_options
def run_command(
    target: str,
    member: str,
    recipient: str,
    node_dir: Path,
    tester: str,
    document: Path,
    listen: str,
    wait: float,
    out: Path,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Send the test cases to TARGET, judge what comes back, write a signed report."""
    passphrase = read_passphrase(passphrase_env, passphrase_file)
    try:
        if out.exists():
            raise ConformanceError(ConformanceReason.OUT_EXISTS, f"{out} exists: name a new folder")
        kit, gateway = _setup(target, member, recipient, node_dir, tester, document, listen, wait,
                              passphrase)  # fmt: skip
        started = _now()
        run = asyncio.run(run_conformance(kit, gateway))
        _write(out, kit, gateway, run, started)
    except (ConformanceError, DirectoryError, SmimeError) as error:
        fail(error)
    results = verdicts(run.findings)
    for verdict in results:
        click.echo(f"{'pass' if verdict.passed else 'FAIL'}  {verdict.requirement}")
    failed = [v.requirement for v in results if not v.passed]
    if failed:
        detail = f"{', '.join(failed)} failed (report in {out})"
        fail(ConformanceError(ConformanceReason.NOT_CONFORMANT, detail))
    click.echo(f"all {len(results)} requirements pass; report in {out}")


def _setup(
    target: str,
    member: str,
    recipient: str,
    node_dir: Path,
    tester: str,
    document: Path,
    listen: str,
    wait: float,
    passphrase: bytes | None,
) -> tuple[Kit, Target]:
    try:
        anchors = tuple(load_certificates((node_dir / "certs" / "federation-ca.pem").read_bytes()))
        signed = document.read_bytes(), Path(f"{document}.p7s").read_bytes()
    except (OSError, ValueError) as error:
        raise ConformanceError(ConformanceReason.UNREADABLE, str(error)) from None
    directory = verify_document(*signed, anchors=list(anchors), now=_now())
    entry, testing = directory.member(member), directory.member(tester)
    if entry is None or testing is None:
        detail = f"{member if entry is None else tester} is not in the directory"
        raise ConformanceError(ConformanceReason.MEMBER_UNKNOWN, detail)
    secret = passphrase or b""
    try:
        signer = SignerIdentity(
            load_certificate((node_dir / "certs" / "signing.pem").read_bytes()),
            load_private_key((node_dir / "keys" / "signing.key").read_bytes(), passphrase),
        )
        identities = tuple(decryption_identities(node_dir, secret))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(node_dir / "certs" / "tls.pem", node_dir / "keys" / "tls.key", secret)
    except (OSError, ValueError, ssl.SSLError) as error:
        raise ConformanceError(ConformanceReason.KEYS_UNAVAILABLE, str(error)) from None
    kit = Kit(
        Tester(tester, testing.domains[0], signer), identities, directory, anchors,
        _host_port(listen, "--listen"), tls, _now, wait,
    )  # fmt: skip
    return kit, Target(*_host_port(target, "--target"), entry, recipient)


def _write(out: Path, kit: Kit, target: Target, run: Run, started: datetime) -> None:
    """report.json, its detached signature report.json.p7s, and received/NN.eml."""
    document = report_document(
        tester=kit.tester.org_id, member=target.member.org_id,
        target=f"{target.host}:{target.port}", started=started, finished=_now(),
        findings=run.findings, cases=run.cases,
    )  # fmt: skip
    (out / "received").mkdir(parents=True)
    write_atomic(out / "report.json", document)
    write_atomic(out / "report.json.p7s", sign_report(document, kit.tester.signer, _now()))
    for number, body in enumerate(run.received, 1):
        write_atomic(out / "received" / f"{number:02d}.eml", body)
