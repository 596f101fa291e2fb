"""``securemail postfix-maps``: the map from the node's verified directory, errors in one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result

from securemail.cli.main import cli
from securemail.config.anchors import load_anchors
from securemail.directory.fetch import Source
from securemail.directory.store import DirectoryStore
from tests.conftest import require_tool
from tests.node.conftest import Federation


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["postfix-maps", *args])


def _fetched(federation: Federation, node: str = "agency") -> Path:
    """Accept the published directory into ``node``'s state, as a running node does; its config."""
    config = federation.config(node)
    store = DirectoryStore(
        config.data_dir / "directory", load_anchors(config.anchor), federation=config.federation
    )
    store.accept(Source(config.directory).fetch(), datetime.now(UTC))
    return federation.nodes[node].config


def _one_error_line(result: Result, code: int, reason: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {reason}: "), result.output
    assert "Traceback" not in result.output


def test_map_to_stdout_routes_members_to_the_relay_but_not_own_domains(
    federation: Federation,
) -> None:
    """``--output -`` prints one line per member domain to the relay listener, never the
    node's own domain (that would loop mail for the agency back to its node)."""
    config = _fetched(federation)
    result = _run("--config", str(config), "--output", "-")
    assert result.exit_code == 0, result.output
    relay = federation.nodes["agency"].relay_port
    routes = dict(
        line.split() for line in result.output.splitlines() if line and not line.startswith("#")
    )
    assert routes["securemail.provider.nz"] == f"smtp:[127.0.0.1]:{relay}"
    assert "agency.govt.nz" not in routes
    assert "# Left out, served by this node: agency.govt.nz." in result.output


def test_json_file_then_unchanged_and_next_hop_override(
    federation: Federation, tmp_path: Path
) -> None:
    """The map is written atomically and described in JSON; a second run changes nothing."""
    config = _fetched(federation)
    path = tmp_path / "transport"
    args = ["--config", str(config), "-o", str(path), "--no-postmap", "--json"]
    first = _run(*args, "--next-hop", "relay:[10.0.0.20]:10025")
    second = _run(*args, "--next-hop", "relay:[10.0.0.20]:10025")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    one, two = json.loads(first.output), json.loads(second.output)
    assert (one["changed"], two["changed"]) == (True, False)
    assert one["excluded"] == ["agency.govt.nz"] and one["map"] == str(path)
    assert "securemail.provider.nz  relay:[10.0.0.20]:10025" in path.read_text()


def test_postfix_table_gives_the_defaults_and_postmap_runs(
    federation: Federation, tmp_path: Path
) -> None:
    """With [postfix] in node.toml no option is needed; postmap builds ``<map>.db``."""
    require_tool("postmap")
    config = _fetched(federation)
    folder = tmp_path / "postfix"
    folder.mkdir()
    (folder / "main.cf").write_text("compatibility_level = 3.6\n")
    path = tmp_path / "transport"
    config.write_text(
        config.read_text()
        + f'\n[postfix]\ntransport_map = "{path}"\nconfig_directory = "{folder}"\n'
    )
    result = _run("--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}: written, ")
    assert path.with_name("transport.db").is_file()


def test_without_a_directory_one_line_and_no_state_made(federation: Federation) -> None:
    """A node that never fetched its directory: exit 1, no-directory, and nothing created."""
    config = federation.nodes["agency"].config
    state = federation.config("agency").data_dir / "directory"
    _one_error_line(_run("--config", str(config), "-o", "-"), 1, "no-directory")
    assert not state.exists()


def test_usage_mistakes_exit_2(federation: Federation) -> None:
    """No output and no [postfix]; a next hop that is not transport:nexthop: exit 2."""
    config = str(_fetched(federation))
    assert _run("--config", config).exit_code == 2
    bad = _run("--config", config, "-o", "-", "--next-hop", "10.0.0.20 # x")
    assert bad.exit_code == 2 and "transport:nexthop" in bad.output


def test_postmap_failure_is_one_line_and_exit_1(federation: Federation, tmp_path: Path) -> None:
    """postmap refusing (no main.cf where -c points): ``error: postmap-failed: ...``, exit 1."""
    require_tool("postmap")
    config = str(_fetched(federation))
    result = _run(
        "--config", config, "-o", str(tmp_path / "t"), "--postfix-config", str(tmp_path / "no")
    )
    _one_error_line(result, 1, "postmap-failed")
