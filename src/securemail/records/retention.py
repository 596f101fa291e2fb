"""How long each class of record is kept, and under which authority ([records] in node.toml).

    [records]
    checkpoint_interval = "15m"     # how often the node signs the chain's head
    checkpoint_signers = []         # other nodes sharing this database (their host names)
    message = "2557d"               # message metadata: queue entries, their events
    evidence = "2557d"              # receipts and the evidence they carry
    quarantine = "365d"             # quarantined messages (content included)
    account = "2557d"               # account events
    security = "2557d"              # key custody, directory, operator actions
    message_authority = "…"         # written into each disposal record (one per class)

The defaults and the authorities they stand on are in docs/records.md: an organisation
replaces them with its own disposal authority's classes. Disposal records themselves
(class ``disposal``) are never disposed of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from securemail.config.toml_table import Table
from securemail.records.classes import RecordClass

DISPOSABLE = (
    RecordClass.MESSAGE,
    RecordClass.EVIDENCE,
    RecordClass.QUARANTINE,
    RecordClass.ACCOUNT,
    RecordClass.SECURITY,
)
DEFAULT_KEEP = {
    RecordClass.MESSAGE: "2557d",  # 7 years
    RecordClass.EVIDENCE: "2557d",
    RecordClass.QUARANTINE: "365d",
    RecordClass.ACCOUNT: "2557d",
    RecordClass.SECURITY: "2557d",
}
DEFAULT_AUTHORITY = (
    "Public Records Act 2005 s 17-18; the organisation's disposal authority (see docs/records.md)"
)


@dataclass(frozen=True)
class RecordsSettings:
    """[records]: checkpoint interval, and each class's retention and authority."""

    checkpoint_interval: timedelta = timedelta(minutes=15)
    checkpoint_signers: tuple[str, ...] = ()  # other nodes on this database, by host name
    keep: Mapping[RecordClass, timedelta] = field(
        default_factory=lambda: {c: timedelta(days=int(v[:-1])) for c, v in DEFAULT_KEEP.items()}
    )
    authority: Mapping[RecordClass, str] = field(
        default_factory=lambda: dict.fromkeys(DISPOSABLE, DEFAULT_AUTHORITY)
    )


def parse_records(table: Table | None) -> RecordsSettings:
    """The [records] table (every key optional); ConfigError naming a wrong key."""
    if table is None:
        return RecordsSettings()
    settings = RecordsSettings(
        checkpoint_interval=table.duration("checkpoint_interval", "15m"),
        checkpoint_signers=table.strings("checkpoint_signers", []),
        keep={c: table.duration(c.value, DEFAULT_KEEP[c]) for c in DISPOSABLE},
        authority={c: table.text(f"{c.value}_authority", DEFAULT_AUTHORITY) for c in DISPOSABLE},
    )
    table.finish()
    return settings
