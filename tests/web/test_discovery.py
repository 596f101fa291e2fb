"""Thunderbird autoconfig and Outlook autodiscover name the node's real host and ports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from securemail.config.node import parse_config
from securemail.web import discovery
from securemail.web.app import make_app
from securemail.web.context import WebContext
from tests.web.conftest import ALICE, node_config

ORIGIN = "https://mail.provider.example"
OUTLOOK = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


@pytest.fixture
def discover(web: WebContext, tmp_path: Path) -> Iterator[TestClient]:
    """The web app of a node with [imap] on 143/993 and [submission] on 587/465."""
    ports = parse_config(
        {
            "node": {"name": "mail.example.govt.nz", "data_dir": "data"},
            "federation": {"name": "test", "anchor": "ca.pem", "directory": "dir.json"},
            "peer": {"listen": "127.0.0.1:0", "tls_certificate": "c.pem", "tls_key": "k.pem"},
            "relay": {"listen": "127.0.0.1:0"},
            "imap": {"listen": "0.0.0.0:143", "tls_listen": "0.0.0.0:993"},
            "submission": {"listen": "0.0.0.0:587", "tls_listen": "0.0.0.0:465"},
            "organisation": [
                {
                    "org_id": "example",
                    "domains": ["x.example"],
                    "keys": "keys",
                    "delivery": {"kind": "maildir", "path": "mail"},
                },
            ],
        },
        tmp_path,
    )
    config = dataclasses.replace(
        node_config(tmp_path), imap=ports.imap, submission=ports.submission
    )
    app = make_app(
        dataclasses.replace(web, config=config), routers=[discovery.router], origin=ORIGIN
    )
    with TestClient(app, base_url=ORIGIN) as client:
        yield client


def parsed(content: bytes) -> ET.Element:
    """The node's own answer (the test trusts it to be plain XML)."""
    return ET.fromstring(content)  # noqa: S314 (our own answer, no entities)


def settings(server: ET.Element) -> dict[str, str]:
    return {child.tag.rpartition("}")[2]: child.text or "" for child in server}


@pytest.mark.parametrize(
    "path",
    [
        f"/mail/config-v1.1.xml?emailaddress={ALICE}",
        "/.well-known/autoconfig/mail/config-v1.1.xml",
    ],
)
def test_autoconfig_names_imap_and_submission(discover: TestClient, path: str) -> None:
    """Thunderbird's request returns clientConfig 1.1 with IMAP 993 SSL and 143 STARTTLS and
    SMTP 465 SSL and 587 STARTTLS on the public origin's host, the address as user name."""
    answer = discover.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    provider = parsed(answer.content).find("emailProvider")
    assert provider is not None
    assert ALICE.rpartition("@")[2] in [d.text for d in provider.findall("domain")]
    incoming = [settings(s) for s in provider.findall("incomingServer[@type='imap']")]
    outgoing = [settings(s) for s in provider.findall("outgoingServer[@type='smtp']")]
    assert [(s["port"], s["socketType"]) for s in incoming] == [("993", "SSL"), ("143", "STARTTLS")]
    assert [(s["port"], s["socketType"]) for s in outgoing] == [("465", "SSL"), ("587", "STARTTLS")]
    for server in incoming + outgoing:
        assert server["hostname"] == "mail.provider.example"
        assert server["username"] == "%EMAILADDRESS%"
        assert server["authentication"] == "password-cleartext"


def test_outlook_autodiscover_answers_the_pox_request(discover: TestClient) -> None:
    """Outlook's POX POST for an address of the node gets IMAP and SMTP protocols with the
    address as login name; an address elsewhere gets the settings without a login name."""
    request = (
        '<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>{}</EMailAddress>'
        "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/"
        "outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"
    )
    answer = discover.post("/autodiscover/autodiscover.xml", content=request.format(ALICE))
    assert answer.status_code == 200
    protocols = [settings(p) for p in parsed(answer.content).iter(f"{OUTLOOK}Protocol")]
    assert [(p["Type"], p["Port"], p["SSL"]) for p in protocols] == [
        ("IMAP", "993", "on"),
        ("IMAP", "143", "off"),
        ("SMTP", "465", "on"),
        ("SMTP", "587", "off"),
    ]
    assert {p["Server"] for p in protocols} == {"mail.provider.example"}
    assert {p["LoginName"] for p in protocols} == {ALICE}
    assert protocols[1]["Encryption"] == "TLS"
    elsewhere = discover.post(
        "/Autodiscover/Autodiscover.xml", content=request.format("someone@else.example")
    )
    assert b"LoginName" not in elsewhere.content and b"<Port>993</Port>" in elsewhere.content


def test_autodiscover_refuses_a_large_body_and_ignores_entities(discover: TestClient) -> None:
    """A body over 8 KiB is 413; an entity in the request is never expanded (no parser)."""
    assert discover.post("/autodiscover/autodiscover.xml", content=b"x" * 9000).status_code == 413
    entity = (
        '<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<Autodiscover><Request><EMailAddress>&e;</EMailAddress></Request></Autodiscover>"
    )
    answer = discover.post("/autodiscover/autodiscover.xml", content=entity)
    assert answer.status_code == 200 and b"root:" not in answer.content
    assert b"LoginName" not in answer.content
