"""Request bundles: everything about one citizen and nothing about another, signed,
verifiable with openssl, recorded, and kept inside the node's storage unless told."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from securemail.records.chain import NewRecord, RecordClass, record
from securemail.records.errors import RecordsError
from securemail.records.export import RecordsRequest, check_destination, export
from securemail.records.schema import log
from securemail.storage.engine import transaction
from tests.conftest import Pki, require_tool
from tests.records.conftest import T0, some_records

AROHA, WIREMU = "aroha@msp.nz", "wiremu@msp.nz"


def _export(engine: Engine, pki: Pki, folder: Path, request: RecordsRequest):  # type: ignore[no-untyped-def]
    return export(
        engine,
        request,
        folder,
        signer=pki.agency.signer,
        node="gw.agency.govt.nz",
        now=T0 + timedelta(days=1),
        by="cli:officer",
    )


def test_subject_export_holds_every_record_about_her_and_no_other(
    engine: Engine, pki: Pki, tmp_path: Path
) -> None:
    """The bundle for Aroha has each of her records, none of Wiremu's, and marks the
    agency clerk (a third party) for redaction review, in JSON lines, CSV and HTML."""
    some_records(engine, 6)
    record(
        engine,
        NewRecord(T0, RecordClass.ACCOUNT, "account.login.ok", (AROHA,), details={"via": "imap"}),
    )
    bundle = _export(engine, pki, tmp_path, RecordsRequest(subject="Aroha@MSP.nz"))
    lines = [json.loads(x) for x in (bundle.folder / "records.jsonl").read_text().splitlines()]
    assert bundle.records == len(lines) == 4  # three messages and the login
    assert all(AROHA in r["subjects"] and WIREMU not in r["subjects"] for r in lines)
    assert lines[0]["redaction_review"] == ["clerk@agency.govt.nz"]
    assert lines[-1]["redaction_review"] == []
    rows = list(csv.DictReader((bundle.folder / "records.csv").open(newline="")))
    assert [int(r["seq"]) for r in rows] == [r["seq"] for r in lines]
    html = (bundle.folder / "summary.html").read_text()
    assert "&lt;0@agency.govt.nz&gt;" in html and "<0@agency" not in html  # autoescaped
    assert WIREMU not in html


def _openssl_verify(openssl: str, folder: Path, ca: Path) -> subprocess.CompletedProcess[bytes]:
    command = [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", "manifest.json.sig"]
    command += ["-content", "manifest.json", "-CAfile", str(ca), "-purpose", "any"]
    return subprocess.run(
        [*command, "-out", "/dev/null"], cwd=folder, capture_output=True, timeout=60, check=False
    )


def test_manifest_signature_verifies_with_openssl(engine: Engine, pki: Pki, tmp_path: Path) -> None:
    """`openssl cms -verify` accepts the manifest's detached signature, and the manifest's
    digests are those of the files."""
    openssl = require_tool("openssl")
    some_records(engine, 2)
    bundle = _export(engine, pki, tmp_path / "out", RecordsRequest(subject=AROHA))
    ca, _ = pki.write_ca(tmp_path)
    done = _openssl_verify(openssl, bundle.folder, ca)
    assert done.returncode == 0, done.stderr.decode()
    manifest = json.loads((bundle.folder / "manifest.json").read_bytes())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((bundle.folder / name).read_bytes()).hexdigest() == digest
    (bundle.folder / "manifest.json").write_bytes(
        b" " + (bundle.folder / "manifest.json").read_bytes()
    )
    again = _openssl_verify(openssl, bundle.folder, ca)
    assert again.returncode != 0  # a changed manifest no longer verifies


def test_the_export_is_recorded_and_a_query_finds_by_metadata(
    engine: Engine, pki: Pki, tmp_path: Path
) -> None:
    """An OIA query export finds records by their metadata; the export is itself a record."""
    some_records(engine, 4, start=T0)
    bundle = _export(engine, pki, tmp_path, RecordsRequest(query="<3@agency"))
    assert bundle.records == 1
    with transaction(engine, "read", write=False) as conn:
        text = conn.execute(select(log.c.record).order_by(log.c.seq.desc())).scalar()
    last = json.loads(str(text))
    assert last["event"] == "records.exported" and last["details"]["kind"] == "oia"
    assert last["details"]["manifest_sha256"] == bundle.manifest_sha256


def test_dates_bound_the_export(engine: Engine, pki: Pki, tmp_path: Path) -> None:
    """--from/--to keep only the records in between."""
    some_records(engine, 6)
    request = RecordsRequest(
        subject=AROHA, start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=3)
    )
    assert _export(engine, pki, tmp_path, request).records == 1  # minute 2 only


def test_destination_outside_node_storage_is_refused_unless_said(tmp_path: Path) -> None:
    """A folder outside data_dir is refused; inside, or with the flag, it is allowed."""
    storage = tmp_path / "node"
    storage.mkdir()
    with pytest.raises(RecordsError, match="records-outside-storage"):
        check_destination(tmp_path / "elsewhere", storage, outside=False)
    with pytest.raises(RecordsError, match="records-outside-storage"):
        check_destination(storage / ".." / "elsewhere", storage, outside=False)
    check_destination(storage / "exports", storage, outside=False)
    check_destination(tmp_path / "elsewhere", storage, outside=True)


def test_a_request_needs_one_subject_or_query() -> None:
    """Neither or both of --subject and --query, or --from after --to, is refused."""
    for request in (
        RecordsRequest(),
        RecordsRequest(subject=AROHA, query="x"),
        RecordsRequest(subject=AROHA, start=T0, end=T0 - timedelta(days=1)),
    ):
        with pytest.raises(RecordsError, match="records-bad-request"):
            request.check()
