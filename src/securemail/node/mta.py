"""Keep the organisation's Postfix in step with the directory: the [postfix] transport map.

After each successful load or refresh of the directory the node renders the transport map
(securemail.directory.postfix_maps) and installs it when it changed. A failure is logged
with its reason code and the previous map stays in force: Postfix keeps routing member
domains to the node as before, and a new member's domain is picked up at the next refresh.

Security: the map holds only what the verified directory lists; this node's own domains
are never in it (they would loop back to the node).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from securemail.config.node import NodeConfig
from securemail.directory.model import Directory
from securemail.directory.postfix_maps import MapError, install_map, transport_map

log = logging.getLogger("securemail.node")


def keep_postfix_map(config: NodeConfig) -> Callable[[Directory], None] | None:
    """The refresher's hook that rewrites the [postfix] map; None without [postfix]."""
    settings = config.postfix
    if settings is None:
        return None

    def rewrite(directory: Directory) -> None:
        rendered = transport_map(directory, config.domains, settings.next_hop)
        try:
            changed = install_map(
                settings.transport_map,
                rendered,
                postmap=settings.postmap,
                config_directory=settings.config_directory,
            )
        except MapError as error:
            log.error("postfix transport map not updated: %s: %s", error.reason, error.detail)
            return
        if changed:
            log.info(
                "postfix transport map %s: %d domains from directory serial %d",
                settings.transport_map,
                len(rendered.routed),
                rendered.serial,
            )

    return rewrite
