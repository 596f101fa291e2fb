"""Mail client set-up: Thunderbird's autoconfig and Outlook's autodiscover, served by the web.

Theory of operation. A mail program asked to add ``hemi@securemail.provider.nz`` looks for
its server settings at well-known places before asking the person; this router answers:

- ``GET /.well-known/autoconfig/mail/config-v1.1.xml`` and ``GET
  /mail/config-v1.1.xml?emailaddress=…`` (Thunderbird, K-9/Thunderbird for Android, Evolution,
  and others: Mozilla's ``clientConfig`` 1.1 format);
- ``POST /autodiscover/autodiscover.xml`` (and ``GET``; Outlook's "POX" autodiscover, the
  ``outlook/responseschema/2006a`` response), also served as ``/Autodiscover/Autodiscover.xml``.

Both name the node's real IMAP and submission ports as ``[imap]`` and ``[submission]`` give
them: implicit TLS first (993, 465), then STARTTLS (143, 587); the host is the host name of
``[web] public_origin``, which is the name people's devices already trust for this node.
The user name is the address itself (the primary address is the account name).

Security: the requests are unauthenticated and their content untrusted. Nothing in an answer
depends on whether an account exists (no enumeration): the address asked about is only
checked to be in one of the node's domains and echoed, XML-escaped, as the login name. The
autodiscover request body is read up to 8 KiB and searched for its ``EMailAddress`` element
with a regular expression, never given to an XML parser (no entity expansion, no external
entities).
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from securemail.config.node import ClientPorts, NodeConfig
from securemail.web.context import WebContext, web_context

router = APIRouter(tags=["discovery"])
Web = Annotated[WebContext, Depends(web_context)]
_MAX_BODY = 8 * 1024
_ADDRESS = re.compile(r"[^\s<>\"'@]{1,64}@[A-Za-z0-9.-]{1,253}")
_REQUESTED = re.compile(rb"<EMailAddress>\s*([^<]{1,320}?)\s*</EMailAddress>", re.IGNORECASE)
_AUTODISCOVER = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
_OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
_XML = "application/xml"


def servers(config: NodeConfig, host: str) -> list[tuple[str, int, str]]:
    """(``imap``/``smtp``, port, ``SSL``/``STARTTLS``) for each port the node listens on,
    implicit TLS first."""
    found: list[tuple[str, int, str]] = []
    for kind, ports in (("imap", config.imap), ("smtp", config.submission)):
        if ports is None:
            continue
        found += _ports(kind, ports)
    return found


def _ports(kind: str, ports: ClientPorts) -> list[tuple[str, int, str]]:
    found = []
    if ports.tls_listen is not None:
        found.append((kind, ports.tls_listen.port, "SSL"))
    if ports.listen is not None:
        found.append((kind, ports.listen.port, "STARTTLS"))
    return found


def _host(request: Request) -> str:
    host = urlsplit(str(request.app.state.origin)).hostname
    if not host:
        raise HTTPException(404, "this node has no public host name")
    return host


def _address(web: WebContext, address: str) -> str | None:
    """``address`` if it is a plain address in one of this node's domains, else None."""
    text = address.strip()
    if not _ADDRESS.fullmatch(text):
        return None
    domain = text.rpartition("@")[2].lower().rstrip(".")
    return text if domain in web.config.domains else None


@router.get("/.well-known/autoconfig/mail/config-v1.1.xml", name="autoconfig_well_known")
@router.get("/mail/config-v1.1.xml", name="autoconfig")
async def autoconfig(
    request: Request,
    web: Web,
    emailaddress: Annotated[str, Query(max_length=320)] = "",
) -> Response:
    """Mozilla's clientConfig 1.1 for this node's IMAP and submission ports."""
    host = _host(request)
    address = _address(web, emailaddress)
    domain = address.rpartition("@")[2] if address else sorted(web.config.domains)[0]
    config = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(config, "emailProvider", id=domain)
    for served in sorted(web.config.domains):
        ET.SubElement(provider, "domain").text = served
    ET.SubElement(provider, "displayName").text = f"SecureMail ({web.config.name})"
    ET.SubElement(provider, "displayShortName").text = "SecureMail"
    for kind, port, socket in servers(web.config, host):
        tag = "incomingServer" if kind == "imap" else "outgoingServer"
        server = ET.SubElement(provider, tag, type=kind)
        for name, value in (
            ("hostname", host),
            ("port", str(port)),
            ("socketType", socket),
            ("authentication", "password-cleartext"),
            ("username", "%EMAILADDRESS%"),
        ):
            ET.SubElement(server, name).text = value
    return _xml(config)


@router.post("/autodiscover/autodiscover.xml", name="autodiscover")
@router.get("/autodiscover/autodiscover.xml", name="autodiscover_get")
@router.post("/Autodiscover/Autodiscover.xml", include_in_schema=False)
@router.get("/Autodiscover/Autodiscover.xml", include_in_schema=False)
async def autodiscover(request: Request, web: Web) -> Response:
    """Outlook's POX autodiscover answer: IMAP and SMTP settings (the "email" account type)."""
    host = _host(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise HTTPException(413, "the request is too large")
    found = _REQUESTED.search(body)
    address = _address(web, found[1].decode("utf-8", "replace")) if found else None
    root = ET.Element("Autodiscover", xmlns=_AUTODISCOVER)
    response = ET.SubElement(root, "Response", xmlns=_OUTLOOK)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    for kind, port, socket in servers(web.config, host):
        protocol = ET.SubElement(account, "Protocol")
        values = [
            ("Type", kind.upper()),
            ("Server", host),
            ("Port", str(port)),
            ("DomainRequired", "off"),
            ("SPA", "off"),
            ("AuthRequired", "on"),
        ]
        if socket == "SSL":
            values.append(("SSL", "on"))
        else:
            values += [("SSL", "off"), ("Encryption", "TLS")]
        if address is not None:
            values.append(("LoginName", address))
        for name, value in values:
            ET.SubElement(protocol, name).text = value
    return _xml(root)


def _xml(element: ET.Element) -> Response:
    body = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type=_XML, headers={"Cache-Control": "public, max-age=3600"})
