"""Group an entry's recipients by where their mail goes, so each destination gets one copy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from securemail.policy.routing import Route, RouteKind


@dataclass(frozen=True)
class Group:
    """Recipients that share one routing decision (one member gateway, the smarthost, ...)."""

    route: Route
    recipients: tuple[str, ...]


def _key(decision: Route) -> tuple[str, str]:
    if decision.kind is RouteKind.MEMBER and decision.member is not None:
        return ("member", decision.member.org_id)
    if decision.kind is RouteKind.SMARTHOST:
        return ("smarthost", "")
    return (decision.kind.value, f"{decision.reason}:{decision.domain}")


def group_recipients(recipients: Sequence[str], decide: Callable[[str], Route]) -> list[Group]:
    """Recipients grouped by the decision for their domain (asked once per domain), in order."""
    decisions: dict[str, Route] = {}
    groups: dict[tuple[str, str], list[str]] = {}
    routes: dict[tuple[str, str], Route] = {}
    for address in recipients:
        domain = address.rpartition("@")[2].lower()
        if domain not in decisions:
            decisions[domain] = decide(domain)
        key = _key(decisions[domain])
        routes.setdefault(key, decisions[domain])
        groups.setdefault(key, []).append(address)
    return [Group(routes[key], tuple(members)) for key, members in groups.items()]
