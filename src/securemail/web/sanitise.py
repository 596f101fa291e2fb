"""HTML mail made safe to show: nh3 keeps structure and text, drops anything active or remote.

Security: the HTML is hostile. nh3 (the Rust ``ammonia`` sanitiser) parses it as a browser
would and keeps only an allow-list: no ``script``, ``style``, ``form``, ``iframe`` or event
attributes (``onerror``...), no ``style`` attribute (CSS can fetch), no images at all (a
remote image is a read receipt the sender did not ask permission for), and links only to
``https:`` and ``mailto:``. The result is shown in an ``<iframe sandbox srcdoc>`` without
``allow-scripts`` or ``allow-same-origin``, under the page's CSP and a ``default-src 'none'``
policy of its own: three independent walls, so one mistake is not a breach.
"""

from __future__ import annotations

import html

import nh3

_TAGS = nh3.ALLOWED_TAGS - {"img", "map", "area"}
_ATTRIBUTES = {tag: attrs for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items() if tag in _TAGS}
_SCHEMES = {"https", "mailto"}
_FRAME_POLICY = "default-src 'none'"


def clean_html(text: str) -> str:
    """``text`` with only inert markup left (see the module doc)."""
    return nh3.clean(
        text,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer",
    )


def frame_document(text: str) -> str:
    """A whole document for an iframe's ``srcdoc``: the cleaned HTML under its own CSP."""
    policy = html.escape(_FRAME_POLICY, quote=True)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<base target="_blank"></head><body>'
        f"{clean_html(text)}</body></html>"
    )
