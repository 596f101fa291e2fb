"""`securemail policy explain`: an operator asks what the gateway would decide, and why,
against a real node configuration and the directory the node verified; nothing is sent."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.cli.policy import policy_group
from tests.node.conftest import Federation

MEMBER = "hemi.walker@securemail.provider.nz"
OUTSIDER = "someone@example.com"
SENDER = "aroha.ngata@agency.govt.nz"


def _accept_directory(federation: Federation) -> Path:
    """Have the agency node verify and store the federation's directory, as serve would."""
    config = federation.config("agency")
    source = ["--source", config.directory, "--anchor", str(config.anchor)]
    state = ["--state", str(config.data_dir / "directory")]
    result = CliRunner().invoke(cli, ["directory", "fetch", *source, *state])
    assert result.exit_code == 0, result.output
    return federation.nodes["agency"].config


def _edit(config: Path, *, node: str = "", append: str = "") -> None:
    text = config.read_text().replace("[node]\n", f"[node]\n{node}", 1)
    config.write_text(text + append)


def explain(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(policy_group, ["explain", "--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def test_labelled_mail_goes_to_members_only(federation: Federation) -> None:
    """A labelled message is explained per recipient: member yes, outsider refused and why;
    the refusal makes the exit status 1, with one error line naming its reason."""
    config = _accept_directory(federation)
    args = ("--from", SENDER, "--to", MEMBER, "--to", OUTSIDER, "--label", "in-confidence")
    code, out, err = explain(config, *args)
    assert code == 1
    assert err == f"error: label-requires-securemail: refused for {OUTSIDER}\n"
    assert "label        IN-CONFIDENCE [SEC=IN-CONFIDENCE] (source: header)" in out
    assert f"{MEMBER}: member (member) [member provider, region NZ]:" in out
    assert f"{OUTSIDER}: refuse (label-requires-securemail): " in out
    assert "never sent in the clear" in out
    assert re.search(r"^directory    serial \d+$", out, re.MULTILINE)


def test_unlabelled_mail_to_an_outsider_uses_the_smarthost(federation: Federation) -> None:
    """Ordinary mail to a non-member goes through the configured smarthost."""
    config = _accept_directory(federation)
    _edit(config, append='\n[smarthost]\nhost = "127.0.0.1"\nport = 2525\n')
    code, out, err = explain(config, "--from", SENDER, "--to", OUTSIDER, "--subject", "Lunch")
    assert code == 0, err
    assert "label        unlabelled (source: none)" in out
    assert f"{OUTSIDER}: smarthost (not-a-member): " in out


def test_subject_marking_and_conflict_are_shown(federation: Federation) -> None:
    """A subject marking higher than --label wins, and the disagreement is printed."""
    config = _accept_directory(federation)
    args = ("--from", SENDER, "--to", MEMBER, "--label", "IN-CONFIDENCE")
    code, out, err = explain(config, *args, "--subject", "Pay review [SEC=SENSITIVE]")
    assert code == 0, err
    assert "label        SENSITIVE [SEC=SENSITIVE] (source: subject)" in out
    assert (
        "note         markings disagree (header says IN-CONFIDENCE, subject says SENSITIVE)" in out
    )


def test_sovereignty_rules_from_the_config(federation: Federation) -> None:
    """An offshore node refuses labelled mail; an organisation's allowed regions are obeyed."""
    config = _accept_directory(federation)
    original = config.read_text()
    _edit(config, node='region = "AU"\n')
    code, out, _ = explain(config, "--from", SENDER, "--to", MEMBER, "--label", "RESTRICTED")
    assert code == 1 and f"{MEMBER}: refuse (node-offshore): " in out
    assert "organisation agency (node region AU)" in out
    config.write_text(original)
    _edit(config, append='[organisation.policy]\nallowed_regions = ["AU"]\n')
    code, out, _ = explain(config, "--from", SENDER, "--to", MEMBER, "--label", "RESTRICTED")
    assert code == 1 and f"{MEMBER}: refuse (region-not-allowed) [member provider" in out


def test_personal_use_domain(federation: Federation) -> None:
    """Mail from a personal-use domain is explained with the PERSONAL privacy mark."""
    config = _accept_directory(federation)
    _edit(config, append='[organisation.policy]\npersonal_domains = ["personal.agency.govt.nz"]\n')
    code, out, err = explain(config, "--from", "aroha@personal.agency.govt.nz", "--to", MEMBER)
    assert code == 0, err
    assert "label        PERSONAL [PRIVACY=PERSONAL] (source: personal)" in out


def test_before_any_directory(federation: Federation) -> None:
    """Before the node has verified a directory, every recipient waits (no-directory)."""
    config = federation.nodes["agency"].config
    code, out, err = explain(config, "--from", SENDER, "--to", MEMBER)
    assert code == 0, err
    assert "directory    none verified yet" in out
    assert f"{MEMBER}: defer (no-directory): " in out


def test_bad_input_is_refused_with_a_code(federation: Federation) -> None:
    """Input the command cannot use gets `error: <code>: <detail>` and exit status 1."""
    config = federation.nodes["agency"].config
    cases = {
        "bad-label": ("--from", SENDER, "--to", MEMBER, "--label", "SECRET"),
        "bad-address": ("--from", SENDER, "--to", "not an address"),
        "sender-not-served": ("--from", "x@ministry.govt.nz", "--to", MEMBER),
        "bad-subject": ("--from", SENDER, "--to", MEMBER, "--subject", "a\r\nBcc: x@y.nz"),
    }
    for code_name, args in cases.items():
        code, out, err = explain(config, *args)
        assert code == 1 and err.startswith(f"error: {code_name}: "), (code_name, err)
        assert out == ""
