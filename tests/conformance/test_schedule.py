"""The scheduled conformance role: a node with ``[conformance]`` tests a gateway by itself,
keeps the result, exposes it on /metrics; a regression is an ERROR line with its reason."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from securemail.conformance.history import ConformanceHistory, Result
from securemail.conformance.schedule import alert
from tests.conformance.conftest import TESTER
from tests.conformance.test_run import HEMI, endpoint_of
from tests.node.conftest import WAIT, Federation, running
from tests.queue.conftest import NOW

RESULT = Result("r1", "agency", "127.0.0.1:25", TESTER, NOW, NOW, False, ("SM-RECV-2",), ())


def _enable(federation: Federation) -> None:
    """The provider node tests its own gateway, as the test identity, every hour."""
    config = federation.nodes["provider"].config
    root = federation.root
    config.write_text(
        config.read_text()
        + f"""
[conformance]
interval = "1h"
tester = "{TESTER}"
node_dir = "{root / TESTER}"
listen = "127.0.0.1:{endpoint_of(federation, TESTER)}"
wait = "{int(WAIT)}s"
revoked_signer = "{root / "revoked-signer"}"

[[conformance.target]]
member = "provider"
recipient = "{HEMI}"
"""
    )


def test_a_node_tests_its_gateway_on_schedule_and_shows_it_on_metrics(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """Started with [conformance], the provider node runs the kit against itself at once:
    the history has a passing run with its signed report, the operations log a
    conformance-passed line, /metrics securemail_conformance_passed{member="provider"} 1."""
    _enable(federation)
    provider = federation.nodes["provider"]
    database = federation.config("provider").database
    tls = ssl.create_default_context(cafile=str(federation.config("provider").anchor))

    async def recorded() -> list[Result]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * WAIT
        history = ConformanceHistory.open(database)
        try:
            while not (runs := history.runs()) and loop.time() < deadline:
                await asyncio.sleep(0.5)
            return runs
        finally:
            history.close()

    async def scenario() -> tuple[list[Result], str]:
        async with running(federation, "provider"):
            runs = await recorded()
            base = f"https://127.0.0.1:{provider.web_port}"
            async with httpx.AsyncClient(verify=tls, base_url=base) as client:
                return runs, (await client.get("/metrics")).text

    with caplog.at_level(logging.INFO, "securemail.conformance"):
        runs, metrics = asyncio.run(asyncio.wait_for(scenario(), 6 * WAIT))
    [run] = runs
    assert run.member == "provider" and run.passed, run
    [line] = [r for r in caplog.records if r.name == "securemail.conformance"]
    assert line.getMessage() == "conformance-passed"
    samples = {(s.name, tuple(s.labels.items())): s.value
               for f in text_string_to_metric_families(metrics) for s in f.samples}  # fmt: skip
    assert samples[("securemail_conformance_passed", (("member", "provider"),))] == 1.0
    assert samples[("securemail_conformance_regressions", (("member", "provider"),))] == 0.0
    history = ConformanceHistory.open(database)
    kept = history.report(run.id)
    history.close()
    assert kept is not None and json.loads(kept[0])["result"] == "pass"


def test_a_regression_is_an_error_line_with_its_reason_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run that fails what passed before is logged at ERROR as conformance-regressed with
    the reason code and the requirement ids; a plain failure is a WARNING."""
    with caplog.at_level(logging.INFO, "securemail.conformance"):
        alert(dataclasses.replace(RESULT, regressed=("SM-RECV-2",)))
        alert(dataclasses.replace(RESULT, finished=NOW + timedelta(hours=1)))
    regressed, failed = caplog.records
    assert regressed.levelno == logging.ERROR
    assert regressed.queue == {  # type: ignore[attr-defined]
        "event": "conformance-regressed", "org": "agency",
        "reason": "conformance-regressed", "detail": "SM-RECV-2",
    }  # fmt: skip
    assert failed.levelno == logging.WARNING
    assert failed.queue["reason"] == "conformance-failed"  # type: ignore[attr-defined]
