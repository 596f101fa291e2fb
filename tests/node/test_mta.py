"""The node's [postfix] hook: each current directory rewrites the map; a failure only logs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from securemail.config.node import load_config
from securemail.directory import Directory, next_version
from securemail.directory.fetch import Source
from securemail.directory.refresh import DirectoryRefresher
from securemail.directory.store import DirectoryStore
from securemail.node.mta import keep_postfix_map
from tests.config.test_node import VALID, write
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, Operator, first, member_of, operator
from tests.directory.test_store import chain

__all__ = ["first", "operator"]  # the directory tests' fixtures, used here too


def _directory(pki: Pki) -> Directory:
    """The node's own agency.govt.nz beside ministry.govt.nz."""
    members = (member_of(pki.agency, "agency"), member_of(pki.ministry, "ministry"))
    return next_version(None, None, federation=FEDERATION, members=members, crls=(), now=NOW)


def test_without_postfix_table_there_is_no_hook(tmp_path: Path) -> None:
    """A node without [postfix] leaves Postfix alone."""
    assert keep_postfix_map(load_config(write(tmp_path, VALID))) is None


def test_hook_writes_the_map_without_the_nodes_domains(pki: Pki, tmp_path: Path) -> None:
    """The hook writes ministry.govt.nz to the relay listener and leaves agency.govt.nz out."""
    tail = '\n[postfix]\ntransport_map = "transport"\npostmap = false\n'
    hook = keep_postfix_map(load_config(write(tmp_path, VALID + tail)))
    assert hook is not None
    hook(_directory(pki))
    routes = [
        line.split()
        for line in (tmp_path / "transport").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert routes == [["ministry.govt.nz", "smtp:[127.0.0.1]:10025"]]


def test_hook_failure_is_logged_with_its_reason_and_not_raised(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A map folder that does not exist: one error line naming map-write-failed, no exception."""
    tail = '\n[postfix]\ntransport_map = "missing/transport"\n'
    hook = keep_postfix_map(load_config(write(tmp_path, VALID + tail)))
    assert hook is not None
    with caplog.at_level(logging.ERROR, logger="securemail.node"):
        hook(_directory(pki))
    assert any("map-write-failed" in record.getMessage() for record in caplog.records)


def test_a_refresh_that_adds_a_member_rewrites_the_map(
    pki: Pki, operator: Operator, first: Directory, tmp_path: Path
) -> None:
    """As the node composes them: the refresher's hook is the map rewrite, so serial 2
    (council added) puts council.govt.nz into the map without a restart."""
    tail = '\n[postfix]\ntransport_map = "transport"\npostmap = false\n'
    published = tmp_path / "published" / "directory.json"
    published.parent.mkdir()
    refresher = DirectoryRefresher(
        DirectoryStore(tmp_path / "state", [pki.ca.certificate], federation=FEDERATION),
        Source(str(published)),
        clock=lambda: NOW,
        on_current=keep_postfix_map(load_config(write(tmp_path, VALID + tail))),
    )
    maps = []
    for version in chain(first, pki, operator.signer, 2):
        version.publish(published)
        asyncio.run(refresher.refresh_once(NOW))
        maps.append((tmp_path / "transport").read_text())
    assert "council.govt.nz" not in maps[0] and "ministry.govt.nz" in maps[0]
    assert "council.govt.nz  " in maps[1] and "serial 2 " in maps[1]
    assert "agency.govt.nz  " not in maps[1]
