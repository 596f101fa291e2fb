"""`securemail policy explain` for mail from outside: which sender assurance rule covers
a recipient, and what a message with a given assurance would lack under it."""

from __future__ import annotations

from tests.cli.test_policy_cli import explain
from tests.node.conftest import Federation
from tests.node.test_assurance import AGENCY_RULES

AROHA = "aroha.ngata@agency.govt.nz"
MERE = "mere.tane@securemail.provider.nz"
HEMI = "hemi.walker@securemail.provider.nz"


def test_rules_are_explained_per_assurance(federation: Federation) -> None:
    """Mere without a strong login is refused (exit 1, one error line); with it, delivered;
    Hemi without sole use is warned; a sender no rule covers is delivered."""
    config = federation.nodes["agency"].config
    config.write_text(config.read_text() + AGENCY_RULES)
    code, out, err = explain(config, "--from", MERE, "--to", AROHA, "--assurance", "password")
    assert code == 1 and err == f"error: assurance-below-policy: refused for {AROHA}\n"
    assert "sender assurance: password only, sole use not acknowledged" in out
    assert f"{AROHA}: refuse (rule 1): " in out and "a strong login" in out
    code, out, _ = explain(config, "--from", MERE, "--to", AROHA, "--assurance", "password-totp")
    assert code == 0 and f"{AROHA}: deliver (rule 1): meets the required strong-auth" in out
    code, out, _ = explain(config, "--from", HEMI, "--to", AROHA)
    assert code == 0 and f"{AROHA}: warn (rule 2): " in out and "sole use" in out
    code, out, _ = explain(config, "--from", "a@gsp.co.nz", "--to", AROHA)
    assert code == 0 and f"{AROHA}: deliver: no assurance rule covers" in out


def test_a_bad_assurance_is_a_usage_error(federation: Federation) -> None:
    """An unknown login word is refused with the words it may be."""
    config = federation.nodes["agency"].config
    code, _, err = explain(config, "--from", HEMI, "--to", AROHA, "--assurance", "magic")
    assert code == 2 and "password-totp" in err
