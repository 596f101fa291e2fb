"""The conformance history as Prometheus gauges, read at scrape time (like the queue's).

``securemail_conformance_passed{member}`` is 1 when the member's latest run passed, else
0; ``securemail_conformance_regressions{member}`` the number of requirements of that run
that passed in the run before (alert on ``> 0``); ``securemail_conformance_last_run_
timestamp_seconds{member}`` when it finished (alert when it is older than the interval).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from securemail.conformance.history import ConformanceHistory


class ConformanceCollector(Collector):
    """Each member's latest conformance result, from the history."""

    def __init__(self, history: ConformanceHistory) -> None:
        self.history = history

    def collect(self) -> Iterable[Metric]:
        latest = self.history.latest()
        passed = GaugeMetricFamily(
            "securemail_conformance_passed",
            "1 if the member's latest conformance run passed every requirement, else 0.",
            labels=("member",),
        )
        regressions = GaugeMetricFamily(
            "securemail_conformance_regressions",
            "Requirements of the member's latest run that passed in the run before.",
            labels=("member",),
        )
        finished = GaugeMetricFamily(
            "securemail_conformance_last_run_timestamp_seconds",
            "When the member's latest conformance run finished (Unix time).",
            labels=("member",),
        )
        for result in latest:
            passed.add_metric((result.member,), 1.0 if result.passed else 0.0)
            regressions.add_metric((result.member,), float(len(result.regressed)))
            finished.add_metric((result.member,), result.finished.timestamp())
        yield from (passed, regressions, finished)
