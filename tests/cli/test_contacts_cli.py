"""``securemail contacts``: a verification is asked (its request queued), listed, shown and
revoked; mistakes are one error line or a usage error, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.queue import Direction, QueueStore
from tests.node.conftest import Federation

HEMI = "hemi.walker@securemail.provider.nz"


def _run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["contacts", *args, "--config", str(config)])
    return result.exit_code, result.output


def _agency(federation: Federation) -> Path:
    config = federation.nodes["agency"].config
    QueueStore.open(federation.config("agency").database).close()  # as a node that ran
    return config


def test_verify_queues_the_signed_request_and_revoke_ends_it(federation: Federation) -> None:
    """verify prints the id and queues one outbound message from the contacts address to
    the holder naming it; list and show say pending; revoke makes it revoked."""
    config = _agency(federation)
    code, output = _run(
        config,
        "verify",
        "--address",
        HEMI,
        "--purpose",
        "benefit payments",
        "--require",
        "strong-auth",
    )
    assert code == 0, output
    ident = output.strip()
    store = QueueStore.open(federation.config("agency").database)
    try:
        [entry] = store.list(direction=Direction.OUTBOUND)
        body = store.body(entry.id)
    finally:
        store.close()
    assert entry.mail_from == "securemail-contacts@agency.govt.nz"
    assert [r.address for r in entry.recipients] == [HEMI]
    assert f"Confirm {ident}".encode() in body and b"strong-auth" in body
    assert f"{ident}  pending   {HEMI}  benefit payments" in _run(config, "list")[1]
    shown = json.loads(_run(config, "show", ident)[1])
    assert shown["status"] == "pending" and shown["require"] == ["strong-auth"]
    assert _run(config, "revoke", ident) == (0, f"{ident}: revoked\n")
    assert json.loads(_run(config, "show", ident)[1])["status"] == "revoked"


def test_mistakes(federation: Federation) -> None:
    """An unknown requirement is a usage error (2); an unknown id is one error line (1)."""
    config = _agency(federation)
    code, output = _run(
        config, "verify", "--address", HEMI, "--purpose", "x", "--require", "strong-login"
    )
    assert code == 2 and "strong-auth" in output
    code, output = _run(config, "show", "no-such-id-at-all-here")
    assert code == 1 and output.startswith("error: no-such-contact:") and "Traceback" not in output
