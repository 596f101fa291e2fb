"""Request bundles: every record about a person (Privacy Act) or matching a query (OIA).

A bundle is a new folder holding:

- ``records.jsonl`` — each record as it stands in the log, plus ``redaction_review``:
  the addresses in it that are not the requester's (third parties), to be reviewed
  before release (the Privacy Act 2020 ground for withholding information about another
  person, and the Official Information Act 1982 s 9(2)(a));
- ``records.csv`` — the same, one row per record;
- ``summary.html`` — a readable summary (autoescaped: record values are never markup);
- ``manifest.json`` — the request, the node, the time, the count, and the SHA-256 of
  each file above; ``manifest.json.sig`` — a detached CMS signature over it by the node's
  own key (``openssl cms -verify -binary -inform DER -in manifest.json.sig -content
  manifest.json``).

Only records still held are exported (disposed-of records have no content left). The
export itself is a record (``records.exported``). A destination outside the node's own
storage (``[node] data_dir``) is refused unless the operator says so; saying so is
recorded too.

Security: a bundle holds personal information: it is written 0600 in a 0700 folder, and
its records hold metadata only (see :mod:`securemail.records.chain`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import rfc8785
from sqlalchemy import Connection, Engine, Select, select

from securemail.durable import write_atomic
from securemail.records.access import acted
from securemail.records.chain import timestamp
from securemail.records.errors import RecordsError, RecordsReason
from securemail.records.schema import log, subjects
from securemail.smime import SignerIdentity
from securemail.smime.sign import sign
from securemail.storage.engine import transaction

FILES = ("records.jsonl", "records.csv", "summary.html")
_SUMMARY = jinja2.Environment(autoescape=True).from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Records request {{ name }}</title></head>
<body><main>
<h1>Records held by {{ node }}</h1>
<p>Request: {{ kind }} {{ about }}; records from {{ start or "the first" }} to
{{ end or "now" }}. Made {{ created }}. {{ records|length }} records.</p>
<p>Addresses marked for review are third parties': review them before release.</p>
<table><caption>Records</caption>
<thead><tr><th scope="col">No.</th><th scope="col">Time (UTC)</th><th scope="col">Class</th>
<th scope="col">Event</th><th scope="col">Message-ID</th><th scope="col">Addresses</th>
<th scope="col">For redaction review</th></tr></thead>
<tbody>{% for r in records %}<tr><td>{{ r.seq }}</td><td>{{ r.time }}</td>
<td>{{ r["class"] }}</td><td>{{ r.event }}</td><td>{{ r.message_id or "" }}</td>
<td>{{ r.subjects|join(", ") }}</td><td>{{ r.redaction_review|join(", ") }}</td></tr>
{% endfor %}</tbody></table>
</main></body></html>
"""
)


@dataclass(frozen=True)
class RecordsRequest:
    """What to export: a subject's address (Privacy Act) or a text query (OIA), and when."""

    subject: str | None = None
    query: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def check(self) -> None:
        if bool(self.subject) == bool(self.query):
            detail = "give --subject ADDRESS (Privacy Act) or --query TEXT (OIA), one of them"
            raise RecordsError(RecordsReason.BAD_REQUEST, detail)
        if self.start and self.end and self.start > self.end:
            raise RecordsError(RecordsReason.BAD_REQUEST, "--from is after --to")


@dataclass(frozen=True)
class Bundle:
    folder: Path
    records: int
    manifest_sha256: str


def check_destination(destination: Path, storage: Path, *, outside: bool) -> None:
    """Refuse a destination outside the node's own storage unless ``outside``."""
    if not outside and not destination.resolve().is_relative_to(storage.resolve()):
        detail = (
            f"{destination} is outside the node's storage {storage}; "
            "say --outside-node-storage to write it there (it is recorded)"
        )
        raise RecordsError(RecordsReason.OUTSIDE_STORAGE, detail)


def _selection(request: RecordsRequest) -> Select[Any]:
    query = select(log.c.record).where(log.c.record.is_not(None))
    if request.subject:
        about = select(subjects.c.seq).where(subjects.c.address == request.subject.lower())
        query = query.where(log.c.seq.in_(about))
    else:
        query = query.where(log.c.record.contains(request.query or "", autoescape=True))
    if request.start:
        query = query.where(log.c.time >= request.start)
    if request.end:
        query = query.where(log.c.time <= request.end)
    return query.order_by(log.c.seq)


def matching(conn: Connection, request: RecordsRequest) -> list[dict[str, Any]]:
    """The records the request covers, each with its third parties marked."""
    found = []
    own = (request.subject or "").lower()
    for text in conn.execute(_selection(request)).scalars():
        value: dict[str, Any] = json.loads(text)
        value["redaction_review"] = [a for a in value["subjects"] if a != own]
        found.append(value)
    return found


def _csv(records: Sequence[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    columns = ("seq", "time", "class", "event", "message_id")
    writer.writerow([*columns, "subjects", "redaction_review", "details"])
    for r in records:
        extra = [" ".join(r["subjects"]), " ".join(r["redaction_review"])]
        writer.writerow([*(r[c] or "" for c in columns), *extra, json.dumps(r["details"])])
    return out.getvalue().encode("utf-8")


def _files(records: Sequence[dict[str, Any]], facts: dict[str, Any]) -> dict[str, bytes]:
    lines = b"".join(rfc8785.dumps(r) + b"\n" for r in records)
    html = _SUMMARY.render(records=records, **facts).encode("utf-8")
    return {"records.jsonl": lines, "records.csv": _csv(records), "summary.html": html}


def export(
    engine: Engine,
    request: RecordsRequest,
    destination: Path,
    *,
    signer: SignerIdentity,
    node: str,
    now: datetime,
    by: str,
    outside: bool = False,
) -> Bundle:
    """Write the bundle for ``request`` into a new folder below ``destination``; recorded."""
    request.check()
    with transaction(engine, "records export", write=False) as conn:
        records = matching(conn, request)
    kind = "privacy-act" if request.subject else "oia"
    name = f"{kind}-{now:%Y%m%dT%H%M%SZ}-{hashlib.sha256(str(request).encode()).hexdigest()[:8]}"
    facts = {
        "name": name,
        "node": node,
        "kind": kind,
        "about": request.subject or request.query,
        "start": timestamp(request.start) if request.start else None,
        "end": timestamp(request.end) if request.end else None,
        "created": timestamp(now),
    }
    files = _files(records, facts)
    manifest = rfc8785.dumps(
        facts
        | {
            "records": len(records),
            "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
        }
    )
    folder = destination / name
    folder.mkdir(mode=0o700, parents=True)
    for file_name, data in (files | {"manifest.json": manifest}).items():
        write_atomic(folder / file_name, data)
    write_atomic(
        folder / "manifest.json.sig", sign(manifest, signer, now=now, detached=True).der.join()
    )
    digest = hashlib.sha256(manifest).hexdigest()
    details = {"kind": kind, "records": str(len(records)), "manifest_sha256": digest}
    details |= {"destination": str(folder), "outside_node_storage": "yes" if outside else "no"}
    details |= {k: str(v) for k, v in facts.items() if k in ("about", "start", "end") and v}
    acted(engine, "records.exported", by=by, now=now, details=details)
    return Bundle(folder, len(records), digest)


@dataclass(frozen=True)
class PastExport:
    """One ``records.exported`` record, as the console lists it."""

    seq: int
    time: str
    details: dict[str, str]


def past_exports(engine: Engine, *, limit: int = 50) -> list[PastExport]:
    """The newest exports recorded in the log (CLI and console alike), newest first."""
    query = (
        select(log.c.seq, log.c.record)
        .where(log.c.record_class == "security", log.c.event == "records.exported")
        .where(log.c.record.is_not(None))
        .order_by(log.c.seq.desc())
        .limit(limit)
    )
    with transaction(engine, "records exports", write=False) as conn:
        rows = conn.execute(query).all()
    found = []
    for seq, text in rows:
        value = json.loads(text)
        found.append(PastExport(int(seq), value["time"], value["details"]))
    return found
