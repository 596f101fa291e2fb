"""Delivery into a real Postfix store that demands TLS, a client certificate and SASL AUTH.

The store is a private Postfix (tests/support/postfix.py) whose SASL is a private Dovecot's
authentication service over TCP (``smtpd_sasl_type = dovecot``); it requires STARTTLS, a
client certificate from its own CA and an authenticated client before it takes any
recipient. The node's side is :class:`SmtpTarget` as node.toml's
``[organisation.delivery]`` builds it: ``cafile``, ``client_certificate`` and ``client_key``
(encrypted under the node passphrase), ``auth_user`` with a password from a file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography.x509.oid import ExtendedKeyUsageOID

from securemail.accounts.dovecot import DovecotUser, export_users
from securemail.config.node import Delivery, StoreAuth, StoreTls
from securemail.deliver import SmtpTarget
from securemail.node.context import store_client
from securemail.pki.authority import issue, make_root_ca, private_key_pem
from tests.conftest import require_tool
from tests.support.dovecot import mail_owner, start_dovecot
from tests.support.postfix import PostfixInstance, start_postfix

NOW = datetime.now(UTC)  # OpenSSL and Postfix check validity against the system clock
USER, PASSWORD = "securemail", "store password for the node, long enough"
KEY_PASSPHRASE = b"node passphrase for the tests"
PASSWORD_FILE = "store-password"  # the file in Store.files holding PASSWORD
RECIPIENT = "aroha.ngata@agency.govt.nz"
BODY = b"From: hemi@provider.nz\r\nTo: aroha.ngata@agency.govt.nz\r\nSubject: t\r\n\r\nhello\r\n"
WAIT = 30.0


@dataclass(frozen=True)
class Store:
    postfix: PostfixInstance
    files: Path  # CA files, the node's client certificate and key, the password file
    sasl_port: int  # Dovecot's authentication service, for another store
    tmp: Path


def _need_root_tools() -> None:
    require_tool("postfix")
    require_tool("dovecot")
    if os.geteuid() != 0:
        reason = "private Postfix and Dovecot instances need root (their masters do)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)


def _write_pki(folder: Path) -> None:
    """store-ca.pem / store.pem / store.key for 127.0.0.1; client-ca.pem and the node's
    client.pem with client.key encrypted under KEY_PASSPHRASE; other-ca.pem (unrelated)."""
    server_auth, client_auth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    store_ca, client_ca = (make_root_ca(n, now=NOW) for n in ("Store CA", "Client CA"))
    store = issue(store_ca, "127.0.0.1", now=NOW, domains=["127.0.0.1"],
                  usage="signing", extended_key_usage=(server_auth,))  # fmt: skip
    client = issue(client_ca, "gw.agency.govt.nz", now=NOW, domains=["gw.agency.govt.nz"],
                   usage="signing", extended_key_usage=(client_auth,))  # fmt: skip
    files = {
        "store-ca.pem": store_ca.certificate_pem(),
        "store.pem": store.certificate_pem(),
        "store.key": private_key_pem(store.private_key, None),
        "client-ca.pem": client_ca.certificate_pem(),
        "client.pem": client.certificate_pem(),
        "client.key": private_key_pem(client.private_key, KEY_PASSPHRASE),
        "other-ca.pem": make_root_ca("Other CA", now=NOW).certificate_pem(),
        PASSWORD_FILE: f"{PASSWORD}\n".encode(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _store_settings(files: Path, sasl_port: int) -> dict[str, str]:
    """TLS required with a client certificate from client-ca.pem, then AUTH before RCPT."""
    return {
        "smtpd_tls_cert_file": str(files / "store.pem"),
        "smtpd_tls_key_file": str(files / "store.key"),
        "smtpd_tls_security_level": "encrypt",
        "smtpd_tls_req_ccert": "yes",
        "smtpd_tls_CAfile": str(files / "client-ca.pem"),
        "smtpd_tls_loglevel": "1",
        "smtpd_tls_auth_only": "yes",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": f"inet:127.0.0.1:{sasl_port}",
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    _need_root_tools()
    tmp = tmp_path_factory.mktemp("store")
    files = Path(tempfile.mkdtemp(prefix="securemail-store-tls-"))  # Postfix must enter it
    files.chmod(0o755)
    _write_pki(files)
    try:
        with start_dovecot(tmp, sasl=True) as dovecot:
            account = DovecotUser(USER, dovecot.mail_root / USER,
                                  PasswordHasher().hash(PASSWORD), (), False)  # fmt: skip
            uid, gid = mail_owner()
            dovecot.install(export_users([account], uid=uid, gid=gid, slots=dovecot.slots))
            with start_postfix(
                tmp, domain="agency.govt.nz", mailbox_dir=tmp / "mail",
                mailboxes=("aroha.ngata",), settings=_store_settings(files, dovecot.sasl_port),
            ) as postfix:  # fmt: skip
                yield Store(postfix, files, dovecot.sasl_port, tmp)
    finally:
        shutil.rmtree(files, ignore_errors=True)


def _target(
    store: Store,
    *,
    cafile: str = "store-ca.pem",
    secret_in: str = PASSWORD_FILE,
    other: PostfixInstance | None = None,
) -> SmtpTarget:
    """The target node.toml describes, built the way the node builds it (store_client);
    delivering to ``other`` instead of the module's store if given."""
    files, port = store.files, (other or store.postfix).port
    delivery = Delivery(
        "smtp", host="127.0.0.1", port=port, starttls=True,
        store_tls=StoreTls(files / cafile, files / "client.pem", files / "client.key"),
        auth=StoreAuth(USER, password_file=files / secret_in),
    )  # fmt: skip
    assert delivery.store_tls is not None and delivery.store_tls.cafile is not None
    return SmtpTarget(
        "127.0.0.1",
        port,
        starttls=True,
        cafile=str(delivery.store_tls.cafile),
        helo="gw.agency.govt.nz",
        timeout=WAIT,
        client=store_client(delivery, KEY_PASSPHRASE),
    )


def _deliver(target: SmtpTarget) -> tuple[int, str, str]:
    reply = asyncio.run(target.deliver("hemi@provider.nz", [RECIPIENT], BODY, "k"))[RECIPIENT]
    return reply.code, reply.reason, reply.detail


def test_tls_client_certificate_and_auth_deliver(store: Store) -> None:
    """With the store's CA, the node's client certificate and AUTH the store takes the mail;
    its log shows the verified client certificate and the SASL user."""
    before = len(store.postfix.delivered("aroha.ngata"))
    code, _, detail = _deliver(_target(store))
    assert code == 250, detail
    store.postfix.wait_for_log("status=sent", count=before + 1, timeout=WAIT)
    assert len(store.postfix.delivered("aroha.ngata")) == before + 1
    log = store.postfix.log_file.read_text(errors="replace")
    assert f"sasl_method=PLAIN, sasl_username={USER}" in log
    assert "Trusted TLS connection established from" in log


def test_wrong_password_defers_and_never_shows_the_password(store: Store) -> None:
    """A refused AUTH is a 451 downstream-unavailable naming the store's 535; nothing stored."""
    (store.files / "wrong").write_text("not the password at all\n")
    before = len(store.postfix.delivered("aroha.ngata"))
    code, reason, detail = _deliver(_target(store, secret_in="wrong"))
    assert (code, reason) == (451, "downstream-unavailable")
    assert "AUTH refused: 535" in detail and "not the password" not in detail
    assert len(store.postfix.delivered("aroha.ngata")) == before


def test_store_certificate_from_another_ca_defers(store: Store) -> None:
    """A store certificate the cafile does not vouch for: 451, no AUTH sent, nothing stored."""
    before = len(store.postfix.delivered("aroha.ngata"))
    code, reason, detail = _deliver(_target(store, cafile="other-ca.pem"))
    assert (code, reason) == (451, "downstream-unavailable")
    assert "CERTIFICATE_VERIFY_FAILED" in detail, detail
    assert len(store.postfix.delivered("aroha.ngata")) == before


def test_auth_login_where_the_store_offers_no_plain(store: Store) -> None:
    """A store announcing only AUTH LOGIN (as Exchange does) is logged in to with LOGIN."""
    settings = _store_settings(store.files, store.sasl_port)
    settings["smtpd_sasl_mechanism_filter"] = "login"
    with start_postfix(
        store.tmp, domain="agency.govt.nz", mailbox_dir=store.tmp / "login-mail",
        mailboxes=("aroha.ngata",), settings=settings,
    ) as login_only:  # fmt: skip
        code, _, detail = _deliver(_target(store, other=login_only))
        login_only.wait_for_log("status=sent", timeout=WAIT)
        log = login_only.log_file.read_text(errors="replace")
    assert code == 250, detail
    assert f"sasl_method=LOGIN, sasl_username={USER}" in log
