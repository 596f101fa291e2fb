"""The `securemail directory` commands as an operator uses them: sources, state, exit codes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from securemail.cli.directory import directory
from securemail.directory import digest, next_version
from securemail.pki.authority import issue
from securemail.smime import SignerIdentity, oids
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, member_of
from tests.directory.test_fetch import LoopbackHttps, running, tls_certificate
from tests.directory.test_store import Version, chain, signed

AT = ["--at", NOW.strftime("%Y-%m-%dT%H:%M:%S")]


@pytest.fixture(scope="module")
def versions(pki: Pki) -> list[Version]:
    """Serials 1 and 2, signed by a directory-signing certificate of the test root."""
    operator = issue(
        pki.ca,
        "SecureMail directory",
        now=NOW,
        usage="signing",
        extended_key_usage=(x509.ObjectIdentifier(oids.EKU_DIRECTORY_SIGNING),),
    )
    first = next_version(
        None,
        None,
        federation=FEDERATION,
        members=(member_of(pki.agency, "agency"), member_of(pki.ministry, "ministry")),
        crls=(pki.crl,),
        now=NOW,
    )
    return chain(first, pki, SignerIdentity(operator.certificate, operator.private_key), 2)


@pytest.fixture
def workdir(pki: Pki, tmp_path: Path) -> Path:
    """The anchor as ca.pem; documents are published to directory.json by each test."""
    pki.write_ca(tmp_path)
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(directory, list(args), catch_exceptions=False)


def fetch(workdir: Path, source: str, *extra: str) -> Result:
    anchor = str(workdir / "ca.pem")
    state = str(workdir / "state")
    return invoke("fetch", "--source", source, "--anchor", anchor, "--state", state, *AT, *extra)


def test_fetch_accepts_newer_versions_and_refuses_a_rollback(
    workdir: Path, versions: list[Version]
) -> None:
    """fetch reports accepted and unchanged versions; a rollback exits 1 with its reason."""
    source = str(workdir / "directory.json")
    versions[0].publish(workdir / "directory.json")
    first = fetch(workdir, source, "--federation", FEDERATION)
    assert first.exit_code == 0
    assert first.stdout == f"accepted serial 1 (digest {digest(versions[0].document)})\n"
    assert fetch(workdir, source).stdout == "unchanged (serial 1)\n"
    versions[1].publish(workdir / "directory.json")
    assert fetch(workdir, source).stdout.startswith("accepted serial 2 ")
    versions[0].publish(workdir / "directory.json")
    refused = fetch(workdir, source)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: directory-rollback: serial 1 is older")
    assert (workdir / "state" / "directory.json").read_bytes() == versions[1].document


def test_fetch_over_https_from_loopback_server(
    pki: Pki, workdir: Path, versions: list[Version]
) -> None:
    """fetch downloads document and signature over TLS verified with --ca-file."""
    versions[0].publish(workdir / "directory.json")
    ca_file = str(workdir / "ca.pem")
    with running(LoopbackHttps(tls_certificate(pki.ca), workdir)) as server:
        done = fetch(workdir, server.url("directory.json"), "--ca-file", ca_file, "--timeout", "5")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("accepted serial 1 ")


def test_fetch_over_plain_http_refused(workdir: Path) -> None:
    """An http:// source is refused with its reason and nothing is created."""
    refused = fetch(workdir, "http://localhost/directory.json")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: directory-source-insecure: ")
    assert not (workdir / "state").exists()


def test_verify_prints_the_version(workdir: Path, versions: list[Version]) -> None:
    """verify prints serial, federation, member count and dates, and touches no state."""
    versions[1].publish(workdir / "directory.json")
    anchor = str(workdir / "ca.pem")
    done = invoke("verify", "--source", str(workdir / "directory.json"), "--anchor", anchor, *AT)
    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        "serial: 2",
        f"federation: {FEDERATION}",
        "members: 3",
        "issued: 2026-11-29T13:00:00Z",
        "next update: 2026-12-06T13:00:00Z",
    ]
    assert lines[5] == f"digest: {digest(versions[1].document)}"


def test_verify_refuses_a_gateway_signature(
    pki: Pki, workdir: Path, versions: list[Version]
) -> None:
    """A directory signed by a member gateway's certificate fails verify with exit 1."""
    signed(versions[0].directory, pki.agency.signer).publish(workdir / "directory.json")
    anchor = str(workdir / "ca.pem")
    done = invoke("verify", "--source", str(workdir / "directory.json"), "--anchor", anchor, *AT)
    assert done.exit_code == 1
    assert done.stderr.startswith("error: directory-untrusted-signer: ")


def test_show_state_as_a_table(pki: Pki, workdir: Path, versions: list[Version]) -> None:
    """show --state lists each member with domains, region, roles, endpoints and expiry."""
    versions[1].publish(workdir / "directory.json")
    fetch(workdir, str(workdir / "directory.json"))
    anchor = str(workdir / "ca.pem")
    done = invoke("show", "--state", str(workdir / "state"), "--anchor", anchor, *AT)
    assert done.exit_code == 0, done.stderr
    header, columns, *rows = done.stdout.splitlines()
    assert header == f"{FEDERATION}, serial 2"
    assert [row.split()[0] for row in rows] == ["agency", "council", "ministry"]
    expiry = pki.council.certificate.not_valid_after_utc.date().isoformat()
    cells = ["council.govt.nz", "NZ", "gateway", "active", "mx.council.govt.nz:25", expiry]
    assert rows[1].split()[4:] == cells
    headings = ["domains", "region", "roles", "status", "endpoints", "enc. expires"]
    assert [columns.index(h) for h in headings] == [rows[1].index(c) for c in cells]
    assert done.stderr == ""


def test_show_source_as_json_and_unverified_warning(workdir: Path, versions: list[Version]) -> None:
    """show --source --json prints the members; without --anchor it says it did not verify."""
    versions[0].publish(workdir / "directory.json")
    done = invoke("show", "--source", str(workdir / "directory.json"), "--json", *AT)
    assert done.exit_code == 0
    assert json.loads(done.stdout) == [m.to_json() for m in versions[0].directory.members]
    assert "warning: not verified" in done.stderr


def test_show_warns_when_stale(workdir: Path, versions: list[Version]) -> None:
    """A directory past its next update is shown with a warning."""
    versions[0].publish(workdir / "directory.json")
    later = versions[0].directory.next_update + timedelta(days=1)
    anchor = str(workdir / "ca.pem")
    at = ["--at", later.strftime("%Y-%m-%dT%H:%M:%S")]
    done = invoke("show", "--source", str(workdir / "directory.json"), "--anchor", anchor, *at)
    assert done.exit_code == 0
    assert "warning: serial 1 is past its next update (2026-12-06T12:00:00Z)" in done.stderr


def test_show_tampered_state_refused(workdir: Path, versions: list[Version]) -> None:
    """show --state with anchors verifies the stored files again and refuses an edited one."""
    versions[0].publish(workdir / "directory.json")
    fetch(workdir, str(workdir / "directory.json"))
    stored = workdir / "state" / "directory.json"
    stored.write_bytes(stored.read_bytes().replace(b"ministry.govt", b"ministrx.govt"))
    anchor = str(workdir / "ca.pem")
    done = invoke("show", "--state", str(workdir / "state"), "--anchor", anchor, *AT)
    assert done.exit_code == 1
    assert done.stderr.startswith("error: directory-signature-invalid: stored state ")


@pytest.mark.parametrize(
    "args",
    [
        ["show"],
        ["show", "--state", "s", "--source", "d.json"],
        ["fetch", "--source", "d.json", "--state", "s"],
    ],
)
def test_usage_errors_exit_2(workdir: Path, args: list[str]) -> None:
    """Neither or both of --state and --source, or no --anchor for fetch, is a usage error."""
    assert invoke(*args).exit_code == 2
