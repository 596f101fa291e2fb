"""``securemail conformance run``: test a member's gateway and write the signed report;
``securemail conformance history``: the results the node keeps."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail.cli.files import fail, passphrase_options, read_passphrase
from securemail.cli.serve import read_config
from securemail.conformance import ConformanceError, ConformanceReason
from securemail.conformance.history import ConformanceHistory, Result
from securemail.conformance.report import report_page, verdicts
from securemail.conformance.session import Run, run_conformance
from securemail.conformance.tester import (
    Identity,
    load_kit,
    read_anchors,
    signed_report,
    target_for,
)
from securemail.directory.document import verify_document
from securemail.directory.model import Directory
from securemail.durable import write_atomic
from securemail.errors import SecureMailError

DIR = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)


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
@click.option("--revoked-signer", type=DIR, default=None,
              help="Folder with signing.pem/signing.key of a tester certificate the federation "
              "revoked: adds the revoked case.")  # fmt: skip
@click.option("--record", "config_path", type=FILE, default=None,
              help="A node.toml: keep the result in that node's conformance history.")  # fmt: skip
@passphrase_options
def run_command(
    target: str, member: str, recipient: str, node_dir: Path, tester: str, document: Path,
    listen: str, wait: float, out: Path, revoked_signer: Path | None, config_path: Path | None,
    passphrase_env: str | None, passphrase_file: Path | None,
) -> None:  # fmt: skip
    """Send the test cases to TARGET, judge what comes back, write a signed report."""
    passphrase = read_passphrase(passphrase_env, passphrase_file)
    database = None if config_path is None else read_config(config_path).database
    try:
        if out.exists():
            raise ConformanceError(ConformanceReason.OUT_EXISTS, f"{out} exists: name a new folder")
        where = _host_port(target, "--target")  # the operator's typing first, then files
        identity = Identity(node_dir, tester, _host_port(listen, "--listen"), wait, revoked_signer)
        directory = _directory(document, node_dir)
        kit = load_kit(identity, directory, passphrase, _now)
        gateway = target_for(directory, member, recipient, where)
        started = _now()
        run = asyncio.run(run_conformance(kit, gateway))
        report, signature = signed_report(kit, gateway, run, started, _now())
        _write(out, report, signature, run)
        if database is not None:
            _record(database, report, signature)
    except SecureMailError as error:
        fail(error)
    _conclude(run, out)


def _directory(document: Path, node_dir: Path) -> Directory:
    anchors = read_anchors(node_dir)
    try:
        signed = document.read_bytes(), Path(f"{document}.p7s").read_bytes()
    except OSError as error:
        raise ConformanceError(ConformanceReason.UNREADABLE, str(error)) from None
    return verify_document(*signed, anchors=list(anchors), now=_now())


def _record(database: str, report: bytes, signature: bytes) -> None:
    history = ConformanceHistory.open(database)
    try:
        result = history.record(report, signature)
    finally:
        history.close()
    if result.regressed:
        click.echo(f"regressed since the last run: {' '.join(result.regressed)}")


def _conclude(run: Run, out: Path) -> None:
    results = verdicts(run.findings)
    for verdict in results:
        click.echo(f"{'pass' if verdict.passed else 'FAIL'}  {verdict.requirement}")
    failed = [v.requirement for v in results if not v.passed]
    if failed:
        detail = f"{', '.join(failed)} failed (report in {out})"
        fail(ConformanceError(ConformanceReason.NOT_CONFORMANT, detail))
    click.echo(f"all {len(results)} requirements pass; report in {out}")


def _write(out: Path, report: bytes, signature: bytes, run: Run) -> None:
    """report.json, its detached signature report.json.p7s, report.html, received/NN.eml."""
    (out / "received").mkdir(parents=True)
    write_atomic(out / "report.json", report)
    write_atomic(out / "report.json.p7s", signature)
    write_atomic(out / "report.html", report_page(report))
    for number, body in enumerate(run.received, 1):
        write_atomic(out / "received" / f"{number:02d}.eml", body)


@conformance.command("history")
@click.option("--config", "config_path", required=True, envvar="SECUREMAIL_CONFIG", type=FILE,
              help="The node's configuration file (TOML); or $SECUREMAIL_CONFIG.")  # fmt: skip
@click.option("--member", default=None, help="Only this member's runs.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def history_command(config_path: Path, member: str | None, limit: int, as_json: bool) -> None:
    """The conformance runs this node kept, newest first, with what regressed."""
    config = read_config(config_path)
    try:
        history = ConformanceHistory.open(config.database)
        try:
            runs = history.runs(member, limit=limit)
        finally:
            history.close()
    except SecureMailError as error:
        fail(error)
    for result in runs:
        click.echo(json.dumps(_json(result)) if as_json else _line(result))


def _json(result: Result) -> dict[str, object]:
    return {
        "id": result.id, "member": result.member, "target": result.target,
        "tester": result.tester, "started": _iso(result.started),
        "finished": _iso(result.finished), "result": "pass" if result.passed else "fail",
        "failed": list(result.failed), "regressed": list(result.regressed),
    }  # fmt: skip


def _line(result: Result) -> str:
    verdict = "pass" if result.passed else "FAIL " + ",".join(result.failed)
    regressed = f"  regressed: {','.join(result.regressed)}" if result.regressed else ""
    return f"{_iso(result.finished)}  {result.member}  {result.target}  {verdict}{regressed}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
