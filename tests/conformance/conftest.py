"""A federation with a tester admitted for conformance runs, and the foreign gateway's keys.

The demo federation is founded once per module; the operator then admits the tester (an
organisation made for testing, its node directory written by ``add-member``, its directory
endpoint the port the kit listens on) and the foreign gateway from its CSRs (its endpoint
the port its Postfix will listen on), and publishes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from securemail.demo.federation import found, free_port
from securemail.federation.node import NodeTarget
from securemail.federation.operator import ROOT, Application, add_member, revoke
from securemail.federation.store import Store
from securemail.pki.authority import issue, private_key_pem
from tests.node.conftest import Federation, federation  # noqa: F401 (the per-test copy)
from tests.support import foreign_peer as fp

TESTER = "conformance"
TESTER_DOMAIN = "conformance.example.nz"


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    """The tester's (the kit's) and the foreign gateway's directory endpoints."""
    return {"tester": free_port(), "foreign": free_port()}


@pytest.fixture(scope="module")
def founded(
    tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]
) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    secret = root / "passphrase.txt"
    secret.write_text("node passphrase for the tests\n")
    now = datetime.now(UTC)
    nodes = found(root, secret, now)
    passphrase = secret.read_bytes().strip()
    application = Application(
        org_id=TESTER,
        name="Conformance tester (test identity)",
        domains=(TESTER_DOMAIN,),
        endpoints=(f"127.0.0.1:{ports['tester']}",),
        region="NZ",
        contact_email=f"securemail@{TESTER_DOMAIN}",
        contact_phone="+64 4 000 0098",
        roles=("gateway",),
    )
    store = Store(root / "federation")
    add_member(store, application, passphrase, now, NodeTarget(root / TESTER, passphrase))
    revoked_signer(store, root / "revoked-signer", passphrase, now)
    if os.geteuid() == 0 or os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
        keys = fp.make_keys(root / "foreign-gateway")
        fp.admit(keys, root / "federation", secret, f"127.0.0.1:{ports['foreign']}")
    else:  # publish the tester alone
        fp.run(*fp.securemail_cli("publish", "--dir", root / "federation",
                                  "--passphrase-file", secret))  # fmt: skip
    yield Federation(root, nodes)


def revoked_signer(store: Store, folder: Path, passphrase: bytes, now: datetime) -> None:
    """As the operator does for the kit's revoked case: a second signing certificate of the
    tester, issued and then revoked (on the CRL the next publish carries), in ``folder``."""
    ca = store.read_identity(ROOT, passphrase)
    issued = issue(ca, f"{TESTER} (revoked for conformance tests)", now=now,
                   domains=[TESTER_DOMAIN], emails=[f"gateway@{TESTER_DOMAIN}"])  # fmt: skip
    store.record_issued(issued.certificate, TESTER, "signing")
    revoke(store, org_id=None, serial=issued.certificate.serial_number, reason="superseded",
           passphrase=passphrase, now=now)  # fmt: skip
    folder.mkdir()
    (folder / "signing.pem").write_bytes(issued.certificate_pem())
    (folder / "signing.key").write_bytes(private_key_pem(issued.private_key, passphrase))


def node_dir_of_tester(copy: Federation) -> Path:
    """The tester's node directory (keys, certificates) in a federation copy."""
    return copy.root / TESTER
