"""The Postfix transport map: member domains to the relay, never the own ones; postmap builds it."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

import pytest

from securemail.directory import Directory, next_version
from securemail.directory.fetch import Source
from securemail.directory.postfix_maps import (
    MapError,
    MapReason,
    install_map,
    transport_map,
)
from securemail.directory.refresh import DirectoryRefresher
from securemail.directory.store import DirectoryStore
from tests.conftest import NOW, Pki, require_tool
from tests.directory.conftest import FEDERATION, Operator, member_of
from tests.directory.test_store import chain

HOP = "smtp:[127.0.0.1]:10025"


@pytest.fixture
def with_suspended(pki: Pki) -> Directory:
    """Serial 1: the agency (active) and the ministry (suspended)."""
    return next_version(
        None,
        None,
        federation=FEDERATION,
        members=(
            member_of(pki.agency, "agency"),
            member_of(pki.ministry, "ministry", status="suspended"),
        ),
        crls=(pki.crl,),
        now=NOW,
    )


def _postfix_config(tmp_path: Path) -> Path:
    """A configuration directory postmap -c accepts (a main.cf and nothing else)."""
    folder = tmp_path / "postfix"
    folder.mkdir()
    (folder / "main.cf").write_text("compatibility_level = 3.6\n")
    return folder


def test_own_domains_are_left_out_and_suspended_members_kept(
    with_suspended: Directory, pki: Pki
) -> None:
    """The node's own domain is not routed (it would loop); a suspended member still is, so
    Postfix never sends its mail out unprotected; each routed line is ``domain  next-hop``."""
    rendered = transport_map(with_suspended, {pki.agency.domain.upper()}, HOP)
    assert rendered.routed == (pki.ministry.domain,)
    assert rendered.excluded == (pki.agency.domain,)
    lines = [line for line in rendered.text.splitlines() if not line.startswith("#")]
    assert lines == [f"{pki.ministry.domain}  {HOP}"]
    assert f"serial {with_suspended.serial}" in rendered.text


def test_rendering_is_stable_so_an_unchanged_directory_rewrites_nothing(
    first: Directory, tmp_path: Path
) -> None:
    """The same directory renders byte for byte the same; install_map then leaves the file."""
    path = tmp_path / "transport"
    rendered = transport_map(first, set(), HOP)
    assert rendered.text == transport_map(first, set(), HOP).text
    assert install_map(path, rendered, postmap=False, config_directory=None) is True
    before = path.stat().st_mtime_ns
    assert install_map(path, rendered, postmap=False, config_directory=None) is False
    assert path.stat().st_mtime_ns == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_postmap_builds_a_table_postfix_looks_up(
    first: Directory, pki: Pki, tmp_path: Path
) -> None:
    """After install_map, ``postmap -q`` finds each member domain's next hop in hash:MAP."""
    postmap = require_tool("postmap")
    folder = _postfix_config(tmp_path)
    path = tmp_path / "transport"
    install_map(path, transport_map(first, set(), HOP), postmap=True, config_directory=folder)
    query = [postmap, "-c", str(folder), "-q", pki.agency.domain, f"hash:{path}"]
    found = subprocess.run(query, capture_output=True, text=True, check=False, timeout=30)
    assert found.stdout.strip() == HOP, found.stderr


def test_postmap_failure_is_a_map_error_naming_the_cause(first: Directory, tmp_path: Path) -> None:
    """postmap refusing (no main.cf in its -c folder) raises postmap-failed with its complaint."""
    require_tool("postmap")
    with pytest.raises(MapError) as refused:
        install_map(
            tmp_path / "transport",
            transport_map(first, set(), HOP),
            postmap=True,
            config_directory=tmp_path / "nowhere",
        )
    assert refused.value.reason is MapReason.POSTMAP_FAILED
    assert "main.cf" in refused.value.detail


def test_a_failed_postmap_is_retried_though_the_map_is_unchanged(
    first: Directory, tmp_path: Path
) -> None:
    """postmap failed after the map was written: the next install builds the table anyway."""
    require_tool("postmap")
    path, rendered = tmp_path / "transport", transport_map(first, set(), HOP)
    with pytest.raises(MapError):
        install_map(path, rendered, postmap=True, config_directory=tmp_path / "nowhere")
    folder = _postfix_config(tmp_path)
    assert install_map(path, rendered, postmap=True, config_directory=folder) is False
    assert path.with_name("transport.db").is_file()


def test_unwritable_folder_is_a_map_error(first: Directory, tmp_path: Path) -> None:
    """A map in a missing folder raises map-write-failed and leaves nothing behind."""
    with pytest.raises(MapError) as refused:
        install_map(
            tmp_path / "missing" / "transport",
            transport_map(first, set(), HOP),
            postmap=False,
            config_directory=None,
        )
    assert refused.value.reason is MapReason.WRITE_FAILED
    assert not (tmp_path / "missing").exists()


def test_refresher_hands_each_accepted_directory_to_its_hook(
    pki: Pki, operator: Operator, first: Directory, tmp_path: Path
) -> None:
    """Serial 1 then 2 accepted: the hook sees each, as the node's map rewrite would."""
    (tmp_path / "published").mkdir()
    seen: list[int] = []
    refresher = DirectoryRefresher(
        DirectoryStore(tmp_path / "state", [pki.ca.certificate], federation=FEDERATION),
        Source(str(tmp_path / "published" / "directory.json")),
        clock=lambda: NOW,
        on_current=lambda directory: seen.append(directory.serial),
    )
    versions = chain(first, pki, operator.signer, 2)

    async def scenario() -> None:
        for version in versions:
            version.publish(tmp_path / "published" / "directory.json")
            await refresher.refresh_once(NOW)

    asyncio.run(scenario())
    assert seen == [1, 2]
