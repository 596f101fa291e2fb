"""The node's scheduled conformance role: test itself and its peers every ``interval``.

Theory of operation. The composition root builds a :class:`ConformanceContext` (the
``[conformance]`` settings, the current directory, the history, the node passphrase, the
clock) and runs :func:`run_schedule` beside the other roles. Every ``interval`` it runs
the kit against each ``[[conformance.target]]`` in turn, as the test identity, keeps the
signed report in the history and writes one operations-log line per run: ``event=
conformance-passed`` (INFO), ``conformance-failed`` (WARNING, reason ``conformance-
failed``), or ``conformance-regressed`` (ERROR, reason ``conformance-regressed``, the
requirement ids that passed in the member's previous run and fail now). A run that cannot
start is ``conformance-not-run`` with its reason code; the schedule goes on.

Security: the role sends only the kit's own test messages, only to the targets the
operator configured, and never delivers what comes back (see session.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from securemail.config.node import ConformanceSettings, ConformanceTarget
from securemail.conformance import ConformanceError, ConformanceReason
from securemail.conformance.history import ConformanceHistory, Result
from securemail.conformance.session import run_conformance
from securemail.conformance.tester import Identity, load_kit, signed_report, target_for
from securemail.directory.model import Directory
from securemail.errors import SecureMailError

log = logging.getLogger("securemail.conformance")


@dataclass(frozen=True)
class ConformanceContext:
    """What the scheduled conformance role uses, and nothing more."""

    settings: ConformanceSettings
    directory: Callable[[], Directory | None]
    history: ConformanceHistory
    passphrase: bytes | None
    clock: Callable[[], datetime]


def identity(settings: ConformanceSettings) -> Identity:
    """The test identity the settings name."""
    assert settings.node_dir is not None and settings.listen is not None  # noqa: S101 (config)
    listen = (settings.listen.host, settings.listen.port)
    return Identity(
        settings.node_dir,
        settings.tester,
        listen,
        settings.wait.total_seconds(),
        settings.revoked_signer,
    )


async def run_schedule(context: ConformanceContext, stop: asyncio.Event) -> None:
    """Test every target, then wait ``interval`` (or until ``stop``), until ``stop``."""
    while not stop.is_set():
        for target in context.settings.targets:
            if stop.is_set():
                return
            await run_target(context, target)
        try:
            await asyncio.wait_for(stop.wait(), context.settings.interval.total_seconds())
        except TimeoutError:
            continue


async def run_target(context: ConformanceContext, target: ConformanceTarget) -> Result | None:
    """One run against ``target``, recorded and logged; None if it could not start."""
    try:
        directory = context.directory()
        if directory is None:
            raise ConformanceError(ConformanceReason.NOT_RUN, "no verified directory yet")
        kit = load_kit(identity(context.settings), directory, context.passphrase, context.clock)
        endpoint = None if target.endpoint is None else (target.endpoint.host, target.endpoint.port)
        gateway = target_for(directory, target.member, target.recipient, endpoint)
        started = context.clock()
        run = await run_conformance(kit, gateway)
        report, signature = signed_report(kit, gateway, run, started, context.clock())
        result = await asyncio.to_thread(context.history.record, report, signature)
    except SecureMailError as error:
        _line(
            logging.WARNING,
            "conformance-not-run",
            target.member,
            str(error.reason.value),
            error.detail,
        )
        return None
    alert(result)
    return result


def alert(result: Result) -> None:
    """The operations-log line of one recorded run (ERROR for a regression)."""
    if result.regressed:
        _line(
            logging.ERROR,
            "conformance-regressed",
            result.member,
            ConformanceReason.REGRESSED.value,
            " ".join(result.regressed),
        )
    elif not result.passed:
        _line(
            logging.WARNING,
            "conformance-failed",
            result.member,
            ConformanceReason.NOT_CONFORMANT.value,
            " ".join(result.failed),
        )
    else:
        _line(logging.INFO, "conformance-passed", result.member, "", result.target)


def _line(level: int, event: str, member: str, reason: str, detail: str) -> None:
    fields = {"event": event, "org": member, "reason": reason, "detail": detail}
    log.log(level, event, extra={"queue": {k: v for k, v in fields.items() if v}})
