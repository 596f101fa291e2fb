"""One error form for every command: click's usage errors, its other refusals and a file
the environment will not give us become ``error: <reason>: <detail>`` with the documented
exit code, never a traceback or click's own "Error:" text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from securemail.cli.grammar import Grammar
from securemail.cli.main import cli


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["queue", "bogus"], "error: usage: No such command 'bogus'."),
        (["queue", "list", "--limit", "x"], "error: usage: Invalid value for '--limit'"),
        (["queue", "show", "--config", "n.toml"], "error: usage: Missing argument 'ENTRY_ID'."),
        (["frobnicate"], "error: usage: No such command 'frobnicate'."),
    ],
    ids=["subcommand", "bad-value", "missing-argument", "command"],
)
def test_usage_errors_are_one_line_and_exit_2(words: list[str], expected: str) -> None:
    """A usage mistake: one ``error: usage:`` line pointing at the command's help, exit 2."""
    result = CliRunner().invoke(cli, words)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(expected) and line.endswith(" -h')"), line


def test_the_installed_command_exits_with_the_code() -> None:
    """As an operator runs it (a process of its own): exit 2 for usage, 0 for --version."""
    command = [sys.executable, "-m", "securemail"]
    done = subprocess.run([*command, "queue", "bogus"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: usage: ")
    assert subprocess.run([*command, "--version"], capture_output=True, check=False).returncode == 0


def test_help_still_exits_0() -> None:
    """``--help`` prints the command's help and exits 0."""
    result = CliRunner().invoke(cli, ["queue", "hold", "--help"])
    assert result.exit_code == 0 and "[ID|ALL|-]..." in result.stdout


def _group() -> click.Group:
    @click.group(cls=Grammar)
    def top() -> None:
        """A stand-in top group: the grammar is the group's, whatever the commands."""

    @top.command()
    @click.argument("path")
    def read(path: str) -> None:
        Path(path).read_bytes()

    @top.command()
    def refuse() -> None:
        raise click.ClickException("no signed copy of <m@x> was kept by this node")

    return top


def test_a_click_refusal_is_failed_exit_1() -> None:
    """A refusal raised as click's own exception: ``error: failed: …``, exit 1."""
    result = CliRunner().invoke(_group(), ["refuse"])
    assert result.exit_code == 1
    assert result.stderr == "error: failed: no signed copy of <m@x> was kept by this node\n"


def test_a_file_the_system_refuses_is_unreadable_exit_1(tmp_path: Path) -> None:
    """A file that is a folder, or not there: one ``error: unreadable:`` line naming it."""
    for path, why in ((tmp_path, "Is a directory"), (tmp_path / "x", "No such file")):
        result = CliRunner().invoke(_group(), ["read", str(path)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.stderr.startswith(f"error: unreadable: {path}: {why}"), result.stderr
