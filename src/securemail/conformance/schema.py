"""The conformance history's table, as migration 0013 creates it.

One row per conformance run the node made or recorded: who was tested, the result, the
requirements that failed and those that regressed (passed in the member's previous run,
fail in this one), and the signed report itself, so the history is its own evidence. The
definition must stay identical to the migration (tests/queue/test_schema.py compares them).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, LargeBinary, MetaData, String, Table, Text

from securemail.storage.types import UtcDateTime

metadata = MetaData()

conformance_results = Table(
    "conformance_results",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("member", String(320), nullable=False),
    Column("target", String(320), nullable=False),
    Column("tester", String(320), nullable=False),
    Column("started", UtcDateTime, nullable=False),
    Column("finished", UtcDateTime, nullable=False),
    Column("result", String(8), nullable=False),  # "pass" or "fail"
    Column("failed", Text, nullable=False),  # the failed requirement ids, space-separated
    Column("regressed", Text, nullable=False),  # failed now, passed in the previous run
    Column("report", LargeBinary, nullable=False),  # the canonical JSON, as signed
    Column("signature", LargeBinary, nullable=False),  # its detached CMS signature (DER)
    Index("ix_conformance_results_member", "member", "finished"),
)
