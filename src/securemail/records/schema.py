"""The records tables (migration 0009): the log, its subjects, head, checkpoints, holds."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from securemail.storage.types import UtcDateTime

metadata = MetaData()
_SEQ = BigInteger().with_variant(Integer, "sqlite")

log = Table(
    "records_log",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("time", UtcDateTime, nullable=False),
    Column("record_class", String(16), nullable=False),
    Column("event", String(64), nullable=False),
    Column("message_id", Text),
    Column("record", Text),  # the canonical record; NULL once disposed of
    Column("prev", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("disposed_by", _SEQ),  # the disposal record that destroyed it
    Index("ix_records_log_class_time", "record_class", "time"),
    Index("ix_records_log_message_id", "message_id"),
)

subjects = Table(
    "records_subjects",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("address", String(320), primary_key=True),
    Index("ix_records_subjects_address", "address"),
)

head = Table(
    "records_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", _SEQ, nullable=False),
    Column("digest", String(64), nullable=False),
)

checkpoints = Table(
    "records_checkpoints",
    metadata,
    Column("id", _SEQ, primary_key=True),
    Column("seq", _SEQ, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("reason", String(16), nullable=False),
    Column("signed", LargeBinary, nullable=False),
)

sources = Table(
    "records_sources",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("records", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
)

holds = Table(
    "records_holds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("address", String(320)),
    Column("message_id", Text),
    Column("reason", Text, nullable=False),
    Column("placed", UtcDateTime, nullable=False),
    Column("released", UtcDateTime),
)
