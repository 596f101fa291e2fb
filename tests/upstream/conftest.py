"""An upstream queue run by the council for the ministry; the agency sends to the ministry."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from securemail.directory.model import Directory
from securemail.smime import ProtectOptions, SealedFor, protect
from tests.conftest import MESSAGE, NOW, Pki
from tests.directory.conftest import member_of


@pytest.fixture(scope="session")
def members(pki: Pki) -> Directory:
    """The agency, the ministry (backed up) and the council (which runs the queue)."""
    found = (
        member_of(pki.agency, "agency"),
        member_of(pki.ministry, "ministry"),
        member_of(pki.council, "council"),
    )
    return Directory("test", 1, NOW, NOW + timedelta(days=7), found, crls=(pki.crl,))


@pytest.fixture(scope="session")
def ciphertext(pki: Pki) -> bytes:
    """The agency's message to bob at the ministry, signed and encrypted as a gateway does,
    with a trace field on top as the queue's listener adds one."""
    options = ProtectOptions(sealed_for=SealedFor("ministry", ("bob@ministry.govt.nz",)))
    protected = protect(
        MESSAGE, pki.agency.signer, [pki.ministry.certificate], now=NOW, options=options
    )
    trace = b"Received: from gw.agency.govt.nz ([127.0.0.1])\r\n\tby queue.test; now\r\n"
    return trace + protected.message


def suspended(directory: Directory, org_id: str) -> Directory:
    members = tuple(
        dataclasses.replace(m, status="suspended") if m.org_id == org_id else m
        for m in directory.members
    )
    return dataclasses.replace(directory, members=members)
