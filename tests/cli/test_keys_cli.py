"""`securemail keys`: the restore drill, refusals that write nothing, and the audit trail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.serialization import pkcs12

from securemail import audit
from securemail.cli.keys import keys
from securemail.pki.authority import private_key_pem
from securemail.smime import RecipientIdentity, protect, unprotect
from securemail.smime.keys import load_certificate, load_private_key
from tests.conftest import MESSAGE, NOW, Pki

PASSPHRASE = "node passphrase for the test keys"
NEW_PASSPHRASE = "the restored node's own passphrase"
EXPORT_PASSPHRASE = "passphrase for the exported file"
ENV = {"NODE_PASS": PASSPHRASE, "NEW_PASS": NEW_PASSPHRASE, "P12_PASS": EXPORT_PASSPHRASE}
KEY = "agency.govt.nz.key"


def invoke(*args: str) -> Result:
    """Run the keys group in-process with the test passphrases in the environment."""
    return CliRunner().invoke(keys, list(args), env=ENV, catch_exceptions=False)


def make_node(directory: Path, pki: Pki) -> Path:
    """A node directory: the agency gateway's encrypted key, its certificate and the root."""
    (directory / "keys").mkdir(parents=True)
    (directory / "certs").mkdir()
    (directory / "keys" / KEY).write_bytes(
        private_key_pem(pki.agency.issued.private_key, PASSPHRASE.encode())
    )
    (directory / "certs" / "agency.govt.nz.pem").write_bytes(pki.agency.issued.certificate_pem())
    (directory / "certs" / "ca.pem").write_bytes(pki.ca.certificate_pem())
    (directory / "node.json").write_text('{"org_id": "agency.govt.nz"}\n')
    return directory


def back_up(node: Path, archive: Path, *extra: str) -> Result:
    return invoke(
        "backup",
        *("--node-dir", str(node), "--out", str(archive), "--passphrase-env", "NODE_PASS"),
        *(extra or ("--shares", "5", "--threshold", "3")),
    )


def share(archive: Path, number: int, of: int = 5) -> Path:
    return archive.with_name(f"{archive.name}.share-{number}-of-{of}.txt")


def restore(archive: Path, shares: list[Path], node: Path, *extra: str) -> Result:
    return invoke(
        "restore",
        *("--backup", str(archive), "--node-dir", str(node), "--passphrase-env", "NEW_PASS"),
        *(arg for path in shares for arg in ("--share", str(path))),
        *extra,
    )


@pytest.fixture(scope="module")
def vault(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 3-of-5 backups (first.json, second.json) of one node, made once for the module."""
    root = tmp_path_factory.mktemp("vault")
    node = make_node(root / "node", pki)
    for name in ("first.json", "second.json"):
        done = back_up(node, root / name)
        assert done.exit_code == 0, done.output
    return root


def test_restore_drill_decrypts_mail_sent_before_the_backup(pki: Pki, tmp_path: Path) -> None:
    """Back up 3-of-5, lose the node, restore from two different triples: old mail still opens."""
    node = make_node(tmp_path / "node", pki)
    sent = protect(MESSAGE, pki.ministry.signer, [pki.agency.certificate], now=NOW).message
    archive = tmp_path / "agency-keys.json"
    done = back_up(node, archive)
    assert done.exit_code == 0, done.output
    assert f"share 5 of 5: {share(archive, 5)}" in done.output
    shutil.rmtree(node)
    for numbers in ((1, 2, 3), (2, 4, 5)):
        clean = tmp_path / "restored" / "-".join(map(str, numbers))
        done = restore(archive, [share(archive, n) for n in numbers], clean)
        assert done.exit_code == 0, done.output
        key_pem = (clean / "keys" / KEY).read_bytes()
        assert b"ENCRYPTED PRIVATE KEY" in key_pem
        identity = RecipientIdentity(
            load_certificate((clean / "certs" / "agency.govt.nz.pem").read_bytes()),
            load_private_key(key_pem, NEW_PASSPHRASE.encode()),
        )
        opened = unprotect(sent, identities=[identity], trust=pki.trust(), now=NOW)
        assert opened.content == MESSAGE
        assert (clean / "certs" / "ca.pem").read_bytes() == pki.ca.certificate_pem()
        assert audit.verify(clean / "audit.log").records == 1


def write_word_swap(source: Path, target: Path) -> Path:
    """A copy of a share file with its first word replaced by another valid word."""
    text = source.read_text()
    first = text.split(" 1. ")[1].split()[0]
    target.write_text(text.replace(f" 1. {first}", f" 1. {'acid' if first != 'acid' else 'acne'}"))
    return target


def flipped_archive(vault: Path, target: Path) -> Path:
    data = bytearray((vault / "first.json").read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    ("case", "reason", "named"),
    [
        ("two shares", "shares-insufficient", "needs any 3 of its 5"),
        ("mixed backups", "shares-mixed", "second.json.share-3-of-5.txt"),
        ("altered word", "share-invalid", "altered.txt"),
        ("flipped byte", "backup-integrity", "altered"),
    ],
)
def test_refused_restore_writes_nothing(
    vault: Path, tmp_path: Path, case: str, reason: str, named: str
) -> None:
    """Each wrong input exits 1 with its reason code and detail, and creates no node at all."""
    archive, first = vault / "first.json", [share(vault / "first.json", n) for n in (1, 2, 3)]
    if case == "two shares":
        shares = first[:2]
    elif case == "mixed backups":
        shares = [*first[:2], share(vault / "second.json", 3)]
    elif case == "altered word":
        shares = [*first[:2], write_word_swap(first[2], tmp_path / "altered.txt")]
    else:
        archive, shares = flipped_archive(vault, tmp_path / "flipped.json"), first
    node = tmp_path / "new-node"
    done = restore(archive, shares, node)
    assert done.exit_code == 1
    assert done.stderr.startswith(f"error: {reason}: ") and named in done.stderr
    assert not node.exists()


def test_restore_keeps_existing_keys_unless_forced(vault: Path, tmp_path: Path) -> None:
    """A key file already in place is refused by name; --force replaces it."""
    node = tmp_path / "node"
    (node / "keys").mkdir(parents=True)
    (node / "keys" / KEY).write_bytes(b"the key that is there now")
    triple = [share(vault / "first.json", n) for n in (3, 4, 5)]
    done = restore(vault / "first.json", triple, node)
    assert done.exit_code == 1 and done.stderr.startswith("error: output-exists: ")
    assert KEY in done.stderr
    assert (node / "keys" / KEY).read_bytes() == b"the key that is there now"
    assert not (node / "certs").exists() and not (node / "audit.log").exists()
    done = restore(vault / "first.json", triple, node, "--force")
    assert done.exit_code == 0, done.output
    assert b"ENCRYPTED PRIVATE KEY" in (node / "keys" / KEY).read_bytes()


def test_backup_audit_record_names_the_backup_and_no_secret(vault: Path) -> None:
    """keys.backup records the id, counts and split; no key, share word or passphrase."""
    log = (vault / "node" / "audit.log").read_text()
    assert audit.verify(vault / "node" / "audit.log").records == 2
    first_id = (vault / "first.json").read_text().split('"backup_id": "')[1].split('"')[0]
    assert '"event":"keys.backup"' in log and f'"backup_id":"{first_id}"' in log
    assert '"shares":"5"' in log and '"threshold":"3"' in log and '"keys":"1"' in log
    assert "PRIVATE KEY" not in log and PASSPHRASE not in log
    words = share(vault / "first.json", 1).read_text().split(" 1. ")[1].split("-----END")[0]
    assert not any(f'"{word}"' in log or f" {word} " in log for word in words.split()[1::2])


def test_backup_refuses_to_overwrite(vault: Path) -> None:
    """An existing archive or share file is never replaced: custodians' shares open only it."""
    before = (vault / "first.json").read_bytes()
    done = back_up(vault / "node", vault / "first.json")
    assert done.exit_code == 1 and done.stderr.startswith("error: output-exists: ")
    assert (vault / "first.json").read_bytes() == before


def test_wrong_node_passphrase_is_refused_before_writing(pki: Pki, tmp_path: Path) -> None:
    """A key the node passphrase does not open is named, and no backup file appears."""
    node = make_node(tmp_path / "node", pki)
    archive = tmp_path / "backup.json"
    done = invoke(
        "backup",
        *("--node-dir", str(node), "--out", str(archive), "--passphrase-env", "NEW_PASS"),
        *("--shares", "3", "--threshold", "2"),
    )
    assert done.exit_code == 1
    assert done.stderr.startswith("error: bad-key: ") and KEY in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node"]


def test_single_custodian_needs_its_flag(vault: Path, tmp_path: Path) -> None:
    """--threshold 1 is a usage error that explains itself; with the flag one share restores."""
    archive = tmp_path / "single.json"
    done = back_up(vault / "node", archive, "--shares", "2", "--threshold", "1")
    assert done.exit_code == 2 and "not split knowledge" in done.output
    assert not archive.exists()
    done = back_up(
        vault / "node", archive, "--shares", "2", "--threshold", "1", "--allow-single-custodian"
    )
    assert done.exit_code == 0, done.output
    done = restore(archive, [share(archive, 2, of=2)], tmp_path / "node")
    assert done.exit_code == 0, done.output


def test_export_p12_writes_a_file_only_its_passphrase_opens(vault: Path, pki: Pki) -> None:
    """export-p12 finds the key's certificate, protects the file, and records the export."""
    out = vault / "agency.p12"
    done = invoke(
        "export-p12",
        *("--node-dir", str(vault / "node"), "--key", "agency.govt.nz", "--out", str(out)),
        *("--export-passphrase-env", "P12_PASS", "--passphrase-env", "NODE_PASS"),
    )
    assert done.exit_code == 0, done.output
    loaded = pkcs12.load_pkcs12(out.read_bytes(), EXPORT_PASSPHRASE.encode())
    assert loaded.cert is not None and loaded.cert.certificate == pki.agency.certificate
    log = (vault / "node" / "audit.log").read_text()
    assert '"event":"keys.export"' in log and EXPORT_PASSPHRASE not in log


def test_export_p12_needs_an_export_passphrase_source(vault: Path, tmp_path: Path) -> None:
    """Without --export-passphrase-env/-file the export is a usage error and writes nothing."""
    out = tmp_path / "agency.p12"
    done = invoke(
        "export-p12",
        *("--node-dir", str(vault / "node"), "--key", KEY, "--out", str(out)),
        *("--passphrase-env", "NODE_PASS"),
    )
    assert done.exit_code == 2 and "--export-passphrase-env" in done.output
    assert not out.exists()


def test_backup_records_the_org_id_of_the_node_config(tmp_path: Path) -> None:
    """The org id comes from the [[organisation]] whose keys are in this folder (or old files)."""
    from securemail.cli.keys import _org_id  # noqa: PLC0415 (one private helper under test)

    node = tmp_path / "node"
    (node / "orgs" / "shop").mkdir(parents=True)
    (node / "node.toml").write_text(
        '[[organisation]]\norg_id = "shop"\nkeys = "orgs/shop"\n'
        '[[organisation]]\norg_id = "agency"\nkeys = "."\n'
    )
    assert _org_id(node) == "agency"
    assert _org_id(node / "orgs" / "shop") is None
    (node / "node.toml").write_text('[node]\norg_id = "legacy"\n')
    assert _org_id(node) == "legacy"
