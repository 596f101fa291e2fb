"""What the upstream queue role may hold: a small frozen value the composition root builds."""

from __future__ import annotations

from dataclasses import dataclass

from securemail.config.node import UpstreamSettings
from securemail.keys.org import OrgKeys
from securemail.protect.context import ProtectContext


@dataclass(frozen=True)
class UpstreamContext:
    """The outbound worker's parts (relay, directory, pins, queue, clock), the node's
    ``[upstream]`` settings, and the organisation whose key signs its notices (the
    operator's own, first in node.toml)."""

    protect: ProtectContext
    settings: UpstreamSettings
    reporter: OrgKeys
