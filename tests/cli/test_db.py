"""``securemail db``: the schema of a node's database seen, upgraded and rolled back, on
SQLite and PostgreSQL, through the node's own config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.storage.versions import chain, head
from tests.cli.conftest import provider_config
from tests.queue.conftest import pg_schema, pg_url

__all__ = ["pg_schema"]


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A node config whose database is SQLite in its data folder, or a fresh PostgreSQL
    schema."""
    if request.param == "sqlite":
        return str(provider_config(tmp_path, "provider.nz"))
    schema: str = request.getfixturevalue("pg_schema")
    path = provider_config(tmp_path, "provider.nz")
    text = path.read_text().replace("[node]\n", f'[node]\ndatabase = "{pg_url(schema)}"\n', 1)
    path.write_text(text)
    return str(path)


def db(*words: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["db", *words])
    return result.exit_code, result.output


def test_upgrade_downgrade_and_current(config: str) -> None:
    """A new database: current says none; upgrade brings it to head; downgrade one
    revision for a rollback, current says behind; upgrade again is up to date."""
    code, output = db("current", "--config", config)
    assert code == 0 and output.startswith("current none (no schema)")
    code, output = db("upgrade", "--config", config)
    assert code == 0 and output == f"schema none -> {head()}\n"
    previous = chain()[-2].id
    code, output = db("downgrade", previous, "--config", config)
    assert code == 0 and output == f"schema {head()} -> {previous}\n"
    code, output = db("current", "--config", config, "--json")
    assert json.loads(output) == {"current": previous, "head": head(), "up_to_date": False}
    assert db("upgrade", "--config", config)[0] == 0
    assert json.loads(db("current", "--config", config, "--json")[1])["up_to_date"] is True


def test_downgrade_of_a_database_with_no_schema_is_refused(config: str) -> None:
    """Nothing to take back: one error line, exit 1."""
    code, output = db("downgrade", "base", "--config", config)
    assert code == 1 and output == "error: database-unavailable: no schema to downgrade\n"
