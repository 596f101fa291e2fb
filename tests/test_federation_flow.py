"""A federation's life through the command line: members join, mail flows, a key rolls over.

Every step is the `securemail` command an operator or a member would run; the message
exchange uses the S/MIME core with what the published directory says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from securemail.cli.main import cli
from securemail.directory import Directory
from securemail.directory.store import DirectoryStore
from securemail.keys.rollover import decryption_identities
from securemail.smime import SignerIdentity, TrustStore, protect, unprotect
from securemail.smime.keys import load_certificate, load_private_key

FED_PASS, NODE_PASS = "federation operator passphrase", "node passphrase of the members"
MESSAGE = (
    b"From: records@agency.govt.nz\r\nTo: archive@council.govt.nz\r\n"
    b"Subject: Transfer schedule\r\nMessage-ID: <flow-1@agency.govt.nz>\r\n\r\nAttached.\r\n"
)


def run(*args: str) -> Result:
    """Run a securemail command in-process; fail the test with its output if it fails."""
    result = CliRunner().invoke(
        cli, list(args), catch_exceptions=False, env={"FED_PASS": FED_PASS, "NODE_PASS": NODE_PASS}
    )
    assert result.exit_code == 0, result.output
    return result


def add_member(fed: Path, org_id: str, domain: str, node: Path) -> None:
    run(
        "federation",
        "add-member",
        "--dir",
        str(fed),
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
        "--node-dir",
        str(node),
        "--passphrase-env",
        "FED_PASS",
        "--node-passphrase-env",
        "NODE_PASS",
    )


def fetch(fed: Path, state: Path) -> Directory:
    """A gateway fetches and accepts the published directory; return what it accepted."""
    anchor = fed / "ca" / "root.pem"
    run(
        "directory",
        "fetch",
        "--source",
        str(fed / "directory.json"),
        "--anchor",
        str(anchor),
        "--state",
        str(state),
    )
    stored = DirectoryStore(state, [load_certificate(anchor.read_bytes())]).load(datetime.now(UTC))
    assert stored is not None
    return stored.directory


def signer_of(node: Path) -> SignerIdentity:
    return SignerIdentity(
        load_certificate((node / "certs" / "signing.pem").read_bytes()),
        load_private_key((node / "keys" / "signing.key").read_bytes(), NODE_PASS.encode()),
    )


def receive(node: Path, directory: Directory, fed: Path, sent: bytes) -> bytes:
    """The council's gateway opens a message and checks the signer owns the From: domain."""
    trust = TrustStore([load_certificate((fed / "ca" / "root.pem").read_bytes())], directory.crls)
    result = unprotect(
        sent,
        identities=decryption_identities(node, NODE_PASS.encode()),
        trust=trust,
        now=datetime.now(UTC),
        require_encryption=True,
    )
    assert directory.may_sign_for(result.signature.signer, "agency.govt.nz")
    return result.content


def test_join_exchange_and_roll_over_an_encryption_key(tmp_path: Path) -> None:
    """Two members join; mail flows by the directory; the council rolls its key over."""
    fed, agency, council, state = (tmp_path / n for n in ("fed", "agency", "council", "state"))
    run(
        "federation",
        "init",
        "--dir",
        str(fed),
        "--name",
        "Flow Test Federation",
        "--passphrase-env",
        "FED_PASS",
    )
    add_member(fed, "agency", "agency.govt.nz", agency)
    add_member(fed, "council", "council.govt.nz", council)
    run("federation", "publish", "--dir", str(fed), "--passphrase-env", "FED_PASS")
    directory = fetch(fed, state)
    assert directory.serial == 2

    now = datetime.now(UTC)
    to_council = directory.encryption_certificate("council.govt.nz", now)
    assert to_council is not None
    first = protect(MESSAGE, signer_of(agency), [to_council], now=now).message
    assert receive(council, directory, fed, first) == MESSAGE

    # the council rolls its encryption key over; the operator certifies and publishes it
    run("keys", "rollover", "--node-dir", str(council), "--passphrase-env", "NODE_PASS")
    request = council / "requests" / "next-encryption.csr"
    run(
        "federation",
        "update-member",
        "--dir",
        str(fed),
        "--org-id",
        "council",
        "--next-encryption-csr",
        str(request),
        "--passphrase-env",
        "FED_PASS",
    )
    run("federation", "publish", "--dir", str(fed), "--passphrase-env", "FED_PASS")
    directory = fetch(fed, state)
    member = directory.owner_of("council.govt.nz")
    assert member is not None and member.encryption.next is not None
    next_cert = tmp_path / "next.pem"
    next_cert.write_bytes(member.encryption.next.public_bytes(serialization.Encoding.PEM))
    run(
        "keys",
        "install-next",
        "--node-dir",
        str(council),
        "--cert",
        str(next_cert),
        "--passphrase-env",
        "NODE_PASS",
    )

    # senders now encrypt to the next key; the council reads old and new mail
    to_council = directory.encryption_certificate("council.govt.nz", datetime.now(UTC))
    assert to_council == member.encryption.next
    second = protect(MESSAGE, signer_of(agency), [to_council], now=datetime.now(UTC)).message
    assert receive(council, directory, fed, second) == MESSAGE

    run(
        "federation",
        "update-member",
        "--dir",
        str(fed),
        "--org-id",
        "council",
        "--promote-next",
        "--passphrase-env",
        "FED_PASS",
    )
    run("federation", "publish", "--dir", str(fed), "--passphrase-env", "FED_PASS")
    run("keys", "promote", "--node-dir", str(council))
    directory = fetch(fed, state)
    assert directory.serial == 4
    promoted = directory.owner_of("council.govt.nz")
    assert promoted is not None and promoted.encryption.next is None
    assert receive(council, directory, fed, first) == MESSAGE  # the retired key still reads
    assert receive(council, directory, fed, second) == MESSAGE
