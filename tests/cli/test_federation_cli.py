"""The `securemail federation` commands on real files: found, admit, publish, revoke, roll over."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from securemail.cli.federation import federation
from securemail.config.node import load_config
from securemail.directory import (
    Accepted,
    Directory,
    check_succession,
    digest,
    verify_document,
)
from securemail.smime import Reason, SmimeError, TrustStore, keys
from tests.conftest import require_tool
from tests.federation.test_operator import make_csr

FEDERATION = "SecureMail Test Federation"
ENV = {"FED_PASS": "federation passphrase for tests", "NODE_PASS": "node passphrase for tests"}
FED_PASS = ("--passphrase-env", "FED_PASS")
NODE_PASS = ("--node-passphrase-env", "NODE_PASS")


def run(*args: str | Path) -> Result:
    """Run ``securemail federation`` in-process with the test passphrases in the environment."""
    return CliRunner().invoke(federation, [str(a) for a in args], env=ENV, catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def member_args(fed: Path, org_id: str, domain: str, *extra: str | Path) -> list[str | Path]:
    return [
        "add-member",
        "--dir",
        fed,
        "--org-id",
        org_id,
        "--name",
        f"Test {org_id}",
        "--domain",
        domain,
        "--endpoint",
        f"mx.{domain}:25",
        "--region",
        "NZ",
        "--contact-email",
        f"securemail@{domain}",
        "--contact-phone",
        "+64 4 000 0000",
        "--role",
        "gateway",
        *FED_PASS,
        *extra,
    ]


@dataclass(frozen=True)
class Built:
    """A federation made through the CLI: agency (keys made here), council (from CSRs)."""

    fed: Path
    agency_node: Path
    council_key: ec.EllipticCurvePrivateKey
    council_tls_key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """init (serial 1) -> add agency -> publish (2) -> add council from CSRs -> publish (3)."""
    base = tmp_path_factory.mktemp("federation")
    fed, node = base / "FED", base / "agency-node"
    ok(run("init", "--dir", fed, "--name", FEDERATION, *FED_PASS))
    ok(run(*member_args(fed, "agency", "agency.govt.nz", "--node-dir", node, *NODE_PASS)))
    ok(run("publish", "--dir", fed, *FED_PASS))
    key, tls_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (base / "council.csr").write_bytes(make_csr(key))
    (base / "council-tls.csr").write_bytes(make_csr(tls_key))
    csrs = ("--csr", base / "council.csr", "--tls-csr", base / "council-tls.csr")
    ok(run(*member_args(fed, "council", "council.govt.nz", *csrs)))
    ok(run("publish", "--dir", fed, *FED_PASS))
    return Built(fed, node, key, tls_key)


@pytest.fixture
def fed(built: Built, tmp_path: Path) -> Path:
    """A copy of the built federation that a test may change."""
    return Path(shutil.copytree(built.fed, tmp_path / "FED"))


def _now() -> datetime:
    return datetime.now(UTC)


def _verified(fed: Path, name: str = "directory.json") -> Directory:
    document = (fed / name).read_bytes()
    signature = (fed / f"{name}.p7s").read_bytes()
    anchor = keys.load_certificate((fed / "ca" / "root.pem").read_bytes())
    return verify_document(document, signature, anchors=[anchor], now=_now(), federation=FEDERATION)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_published_versions_verify_and_chain(built: Built) -> None:
    """Every published version verifies against root.pem, and serials 1 -> 2 -> 3 chain."""
    accepted: Accepted | None = None
    for serial in (1, 2, 3):
        name = f"published/{serial}.json"
        directory = _verified(built.fed, name)
        document_digest = digest((built.fed / name).read_bytes())
        assert directory.serial == serial
        assert check_succession(accepted, directory, document_digest)
        accepted = Accepted(serial, document_digest)
    latest = _verified(built.fed)
    assert latest.serial == 3
    assert [m.org_id for m in latest.members] == ["agency", "council"]
    assert (built.fed / "directory.json").read_bytes() == (
        built.fed / "published" / "3.json"
    ).read_bytes()


def test_openssl_accepts_issued_certificates_for_their_purpose(built: Built) -> None:
    """`openssl verify` with the CRL accepts each certificate for its purpose, and no other."""
    openssl = require_tool("openssl")
    by_use: dict[str, list[str]] = defaultdict(list)
    for path in sorted((built.fed / "issued").glob("*.pem")):
        use = path.read_text().split("use: ", 1)[1].split("\n", 1)[0]
        if use == "encryption" and "org-id: council" in path.read_text():
            # OpenSSL's smimeencrypt purpose demands keyEncipherment, which an EC (ECDH)
            # encryption certificate must not have (RFC 5753): check its chain only
            use = "node"
        by_use[use].append(str(path))
    by_use["node"] = [str(built.agency_node / "certs" / f"{u}.pem") for u in ("signing", "tls")]
    purposes = {
        "signing": "smimesign",
        "encryption": "smimeencrypt",
        "tls": "sslserver",
        "directory-signing": "any",
        "node": "any",
    }

    def verify(purpose: str, certs: list[str]) -> subprocess.CompletedProcess[bytes]:
        command = [openssl, "verify", "-CAfile", "ca/root.pem", "-crl_check"]
        command += ["-CRLfile", "crl.pem", "-purpose", purpose, *certs]
        return subprocess.run(command, cwd=built.fed, capture_output=True, timeout=300, check=False)

    assert len(by_use["signing"]) == len(by_use["tls"]) == 2
    for use, certs in by_use.items():
        done = verify(purposes[use], certs)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    wrong = verify("smimesign", by_use["encryption"][:1])
    assert wrong.returncode != 0


def test_openssl_accepts_the_directory_signature(built: Built) -> None:
    """`openssl cms -verify` accepts FED/directory.json.p7s over FED/directory.json."""
    openssl = require_tool("openssl")
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-content",
            "directory.json",
            "-in",
            "directory.json.p7s",
            "-CAfile",
            "ca/root.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        cwd=built.fed,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def test_node_directory_is_ready_for_the_member(built: Built) -> None:
    """node.toml parses; its keys load with the node passphrase and match their certificates."""
    node = built.agency_node
    config = load_config(node / "node.toml")
    [org] = config.organisations
    assert (org.org_id, org.domains, org.keys) == ("agency", ("agency.govt.nz",), node.resolve())
    assert config.federation == FEDERATION
    assert config.directory == str((built.fed / "directory.json").resolve())
    assert config.anchor.read_bytes() == (built.fed / "ca" / "root.pem").read_bytes()
    passphrase = ENV["NODE_PASS"].encode()
    for use in ("signing", "encryption", "tls"):
        key = keys.load_private_key((node / "keys" / f"{use}.key").read_bytes(), passphrase)
        cert = keys.load_certificate((node / "certs" / f"{use}.pem").read_bytes())
        assert key.public_key() == cert.public_key()
    assert config.tls_key == node.resolve() / "keys" / "tls.key"
    with pytest.raises(SmimeError) as wrong:
        keys.load_private_key((node / "keys" / "tls.key").read_bytes(), b"federation passphrase")
    assert wrong.value.reason is Reason.BAD_KEY


def test_member_from_csr_keeps_its_key(built: Built) -> None:
    """The council's certificates are for the keys of its CSRs; its TLS pin is published."""
    council = _verified(built.fed).member("council")
    assert council is not None
    assert council.signing.current.public_key() == built.council_key.public_key()
    assert council.encryption.current.public_key() == built.council_key.public_key()
    tls = [
        keys.load_certificate(p.read_bytes())
        for p in (built.fed / "issued").glob("*.pem")
        if "org-id: council\nuse: tls" in p.read_text()
    ]
    assert [c.public_key() for c in tls] == [built.council_tls_key.public_key()]


def test_list_shows_members(built: Built) -> None:
    """`list` prints one aligned line per member with status, roles and expiry."""
    lines = ok(run("list", "--dir", built.fed)).output.splitlines()
    assert lines[0].split() == ["ORG-ID", "NAME", "DOMAINS", "STATUS", "ROLES", "EXPIRES"]
    assert lines[1].split()[:6] == [
        "agency",
        "Test",
        "agency",
        "agency.govt.nz",
        "active",
        "gateway",
    ]
    assert lines[1].index("agency.govt.nz") == lines[2].index("council.govt.nz")


@pytest.mark.parametrize(
    ("extra", "code", "detail"),
    [
        (("--domain", "AGENCY.govt.nz"), "domain-conflict", "agency.govt.nz belongs to agency"),
        (("--contact-email", "jane.doe@health.govt.nz"), "member-invalid", "role address"),
        (("--org-id", "agency"), "member-exists", "agency"),
    ],
    ids=["domain-conflict", "personal-contact", "same-org-id"],
)
def test_refused_member_writes_nothing(
    fed: Path, tmp_path: Path, extra: tuple[str, ...], code: str, detail: str
) -> None:
    """A refused add-member exits 1 with its reason code and leaves every file as it was."""
    before = _files(fed)
    node = tmp_path / "health-node"
    result = run(
        *member_args(fed, "health", "health.govt.nz", "--node-dir", node, *NODE_PASS, *extra)
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {code}: ")
    assert detail in result.stderr
    assert _files(fed) == before
    assert not node.exists()


@pytest.mark.parametrize(
    ("csr", "code"),
    [
        (lambda: make_csr(rsa.generate_private_key(65537, 1024)), "weak-key"),  # noqa: S505
        (
            lambda: make_csr(ec.generate_private_key(ec.SECP256R1()), tamper=True),
            "csr-signature-invalid",
        ),
    ],
    ids=["rsa-1024", "bad-signature"],
)
def test_unacceptable_csr_refused(
    fed: Path, tmp_path: Path, csr: Callable[[], bytes], code: str
) -> None:
    """A weak key or a CSR whose signature does not verify is refused and nothing is written."""
    (tmp_path / "member.csr").write_bytes(csr())
    before = _files(fed)
    csrs = ("--csr", tmp_path / "member.csr", "--tls-csr", tmp_path / "member.csr")
    result = run(*member_args(fed, "health", "health.govt.nz", *csrs))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {code}: ")
    assert _files(fed) == before


def test_revoked_member_is_suspended_and_its_certificates_listed(built: Built, fed: Path) -> None:
    """revoke --org-id lists every agency certificate on the CRL; the next version carries it."""
    agency = _verified(fed).member("agency")
    assert agency is not None
    ok(run("revoke", "--dir", fed, "--org-id", "agency", "--reason", "key-compromise", *FED_PASS))
    crl = x509.load_pem_x509_crl((fed / "crl.pem").read_bytes())
    revoked = {entry.serial_number for entry in crl}
    issued = [p for p in (fed / "issued").glob("*.pem") if "org-id: agency\n" in p.read_text()]
    assert revoked == {int(p.stem, 16) for p in issued}
    assert len(revoked) == 3
    ok(run("publish", "--dir", fed, *FED_PASS))
    directory = _verified(fed)
    assert directory.serial == 4
    assert directory.member("agency").status == "suspended"  # type: ignore[union-attr]
    assert {entry.serial_number for entry in directory.crls[0]} == revoked
    trust = TrustStore(
        [keys.load_certificate((fed / "ca" / "root.pem").read_bytes())], directory.crls
    )
    with pytest.raises(SmimeError) as refused:
        trust.validate(agency.signing.current, now=_now() + timedelta(minutes=1))
    assert refused.value.reason is Reason.REVOKED
    again = run("revoke", "--dir", fed, "--serial", format(min(revoked), "X"), *FED_PASS)
    assert again.exit_code == 1
    assert again.stderr.startswith("error: already-revoked: ")
    back = run("reinstate-member", "--dir", fed, "--org-id", "agency")
    assert back.stderr.startswith("error: certificate-revoked: ")
    records = json.loads((fed / "revoked.json").read_text())
    assert {r["reason"] for r in records} == {"key-compromise"}


def test_revoke_one_certificate_by_serial(fed: Path) -> None:
    """revoke --serial revokes that certificate only and leaves its member active."""
    council = json.loads((fed / "members" / "council.json").read_text())
    cert = _verified(fed).member("council").encryption.current  # type: ignore[union-attr]
    serial = ":".join(f"{b:02X}" for b in cert.serial_number.to_bytes(20, "big"))
    ok(run("revoke", "--dir", fed, "--serial", serial, "--reason", "superseded", *FED_PASS))
    crl = x509.load_pem_x509_crl((fed / "crl.pem").read_bytes())
    assert [entry.serial_number for entry in crl] == [cert.serial_number]
    assert json.loads((fed / "members" / "council.json").read_text()) == council
    unknown = run("revoke", "--dir", fed, "--serial", "abcdef", *FED_PASS)
    assert unknown.stderr.startswith("error: unknown-serial: ")


def test_rollover_next_then_promote(built: Built, fed: Path, tmp_path: Path) -> None:
    """A next encryption certificate is published beside the current one, then promoted."""
    new_key = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "next.csr").write_bytes(make_csr(new_key))
    update = ("update-member", "--dir", fed, "--org-id", "council")
    ok(run(*update, "--next-encryption-csr", tmp_path / "next.csr", *FED_PASS))
    ok(run("publish", "--dir", fed, *FED_PASS))
    rolling = _verified(fed).member("council")
    assert rolling is not None
    assert rolling.encryption.current.public_key() == built.council_key.public_key()
    assert rolling.encryption.next is not None
    assert rolling.encryption.next.public_key() == new_key.public_key()
    ok(run(*update, "--promote-next"))
    ok(run("publish", "--dir", fed, *FED_PASS))
    promoted = _verified(fed).member("council")
    assert promoted is not None
    assert promoted.encryption.current == rolling.encryption.next
    assert promoted.encryption.next is None
    assert promoted.signing == rolling.signing


def test_suspend_and_reinstate(fed: Path) -> None:
    """A member can be suspended with a reason (kept in the journal) and reinstated."""
    ok(run("suspend-member", "--dir", fed, "--org-id", "council", "--reason", "audit overdue"))
    assert json.loads((fed / "members" / "council.json").read_text())["status"] == "suspended"
    twice = run("suspend-member", "--dir", fed, "--org-id", "council")
    assert twice.stderr.startswith("error: no-change: ")
    ok(run("reinstate-member", "--dir", fed, "--org-id", "council"))
    assert json.loads((fed / "members" / "council.json").read_text())["status"] == "active"
    journal = [json.loads(line) for line in (fed / "journal.jsonl").read_text().splitlines()]
    assert journal[-2] | {"at": ""} == {
        "at": "",
        "action": "status-suspended",
        "org_id": "council",
        "reason": "audit overdue",
    }


def test_init_refuses_an_existing_federation(fed: Path) -> None:
    """init over a federation is refused and changes nothing."""
    before = _files(fed)
    result = run("init", "--dir", fed, "--name", "Another", *FED_PASS)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: federation-exists: ")
    assert _files(fed) == before


def test_wrong_passphrase_refused(fed: Path) -> None:
    """A wrong federation passphrase is refused before anything is published."""
    result = CliRunner().invoke(
        federation, ["publish", "--dir", str(fed), "--passphrase-env", "P"], env={"P": "wrong"}
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bad-passphrase: ")
    assert not (fed / "published" / "4.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--node-dir", "node"), "--node-passphrase-env"),
        ((), "--node-dir"),
        (("--node-dir", "node", "--node-passphrase-env", "EMPTY"), "empty"),
    ],
    ids=["node-dir-without-passphrase", "keys-without-node-dir", "empty-passphrase"],
)
def test_add_member_usage_errors(fed: Path, args: tuple[str, ...], message: str) -> None:
    """Keys made here need a node directory and a non-empty node passphrase (exit 2)."""
    result = CliRunner().invoke(
        federation,
        [str(a) for a in member_args(fed, "health", "health.govt.nz", *args)],
        env={**ENV, "EMPTY": ""},
    )
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("revoke", *FED_PASS), "--org-id or --serial"),
        (("revoke", "--org-id", "council", "--serial", "01", *FED_PASS), "--org-id or --serial"),
        (("revoke", "--serial", "xyz", *FED_PASS), "hexadecimal"),
        (("update-member", "--org-id", "council"), "nothing to change"),
        (
            (
                "update-member",
                "--org-id",
                "council",
                "--promote-next",
                "--next-signing-csr",
                "@crl",
            ),
            "separate runs",
        ),
        (("publish",), "--passphrase-env"),
    ],
)
def test_usage_errors(fed: Path, args: tuple[str, ...], message: str) -> None:
    """Missing or contradictory options are usage errors (exit 2) with a clear message."""
    rest = [str(fed / "crl.pem") if a == "@crl" else a for a in args[1:]]
    result = CliRunner().invoke(federation, [args[0], "--dir", str(fed), *rest], env=ENV)
    assert result.exit_code == 2
    assert message in result.output


def test_upstream_queues_are_set_published_and_removed(fed: Path) -> None:
    """update-member --upstream names a member's upstream queues (after its endpoints, in
    NZ, with their own pin and operator); publish signs them in; --no-upstream removes them."""
    pin = "sha256:" + "A" * 43 + "="
    queue = f"queue.gsp.co.nz:2525,{pin},agency"
    update = ("update-member", "--dir", fed, "--org-id", "council")
    shown = ok(run(*update, "--upstream", queue)).output
    assert "upstream    queue.gsp.co.nz:2525 run by agency" in shown
    ok(run("publish", "--dir", fed, *FED_PASS))
    council = _verified(fed).member("council")
    assert council is not None
    [upstream] = council.upstream
    assert (upstream.host, upstream.port, upstream.tls_pins) == ("queue.gsp.co.nz", 2525, (pin,))
    assert (upstream.region, upstream.operator) == ("NZ", "agency")
    assert _verified(fed).upstream_operator(pin) == "agency"
    bad = run(*update, "--upstream", "queue.gsp.co.nz:2525,notapin,agency")
    assert bad.exit_code != 0 and bad.stderr.startswith("error: member-invalid: ")
    ok(run(*update, "--no-upstream"))
    ok(run("publish", "--dir", fed, *FED_PASS))
    council = _verified(fed).member("council")
    assert council is not None and council.upstream == ()
