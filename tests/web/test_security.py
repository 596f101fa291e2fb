"""The safety net: security headers, CSRF tokens and Origin checks, error pages, API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from securemail.access.model import Principal, Scope
from securemail.access.tokens import WebAccess
from securemail.web.app import make_app
from securemail.web.auth import api_principal, operator
from securemail.web.context import WebContext
from tests.web.conftest import ALICE, ORIGIN, csrf_of, sign_in

probe = APIRouter()


@probe.get("/api/v1/whoami")
async def whoami(principal: Annotated[Principal, Depends(api_principal)]) -> dict[str, object]:
    return {"name": principal.account.name, "operator": principal.operator}


@probe.get("/broken")
async def broken() -> None:
    raise RuntimeError("a bug")


@probe.get("/console/probe")
async def console_probe(principal: Annotated[Principal, Depends(operator)]) -> dict[str, str]:
    return {"name": principal.account.name}


def access_of(client: TestClient) -> WebAccess:
    access: WebAccess = client.app.state.access  # type: ignore[attr-defined]
    return access


def test_headers_on_every_page(client: TestClient) -> None:
    """The login page carries the strict CSP, nosniff, same-origin referrers, HSTS and no-store."""
    headers = client.get("/login").headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "form-action 'self'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "camera=()" in headers["permissions-policy"]
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["cache-control"] == "no-store"


def test_post_without_csrf_is_refused_and_changes_nothing(
    client: TestClient, web: WebContext
) -> None:
    """An account change without (or with a wrong) CSRF token is 403 and changes nothing."""
    sign_in(client)
    for data in ({"agree": "yes"}, {"agree": "yes", "csrf": "guessed"}):
        response = client.post("/account/sole-use", data=data, headers={"Origin": ORIGIN})
        assert response.status_code == 403
    assert web.accounts.service.get(ALICE).sole_use_acknowledged is None


def test_post_from_a_foreign_origin_is_refused(client: TestClient, web: WebContext) -> None:
    """A form with the right token but a foreign Origin is 403 and changes nothing."""
    sign_in(client)
    token = csrf_of(client.get("/account").text)
    for headers in ({"Origin": "https://evil.example"}, {}):
        response = client.post(
            "/account/sole-use", data={"csrf": token, "agree": "yes"}, headers=headers
        )
        assert response.status_code == 403
    assert web.accounts.service.get(ALICE).sole_use_acknowledged is None


def test_error_pages_leak_nothing(client: TestClient) -> None:
    """A missing page is a plain 404 page that does not echo the path."""
    response = client.get("/no/such/<script>page")
    assert response.status_code == 404 and "script" not in response.text
    assert "Page not found" in response.text


def test_api_token_authenticates(web: WebContext) -> None:
    """No or a wrong token is 401 with a Bearer challenge; a mailbox token is 200."""
    with TestClient(make_app(web, routers=[probe]), base_url=ORIGIN) as client:
        assert client.get("/api/v1/whoami").status_code == 401
        bad = client.get("/api/v1/whoami", headers={"Authorization": "Bearer smapi_x_y"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        _, token = access_of(client).token_add(ALICE, "tests", Scope.MAILBOX)
        good = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200
        assert good.json() == {"name": ALICE, "operator": False}


def test_operator_token_needs_an_operator(web: WebContext) -> None:
    """An operator token works only while its account is an operator."""
    with TestClient(make_app(web, routers=[probe]), base_url=ORIGIN) as client:
        access = access_of(client)
        access.set_operator(ALICE, True)
        _, token = access.token_add(ALICE, "ops", Scope.OPERATOR)
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/whoami", headers=auth).json()["operator"] is True
        access.set_operator(ALICE, False)
        assert client.get("/api/v1/whoami", headers=auth).status_code == 401


def test_console_needs_the_operator_role(web: WebContext) -> None:
    """A signed-in mailbox holder gets 403 from an operator page; an operator gets it."""
    with TestClient(make_app(web, routers=[probe]), base_url=ORIGIN) as client:
        sign_in(client)
        assert client.get("/console/probe").status_code == 403
        access_of(client).set_operator(ALICE, True)
        sign_in(client)
        assert client.get("/console/probe").json() == {"name": ALICE}


def test_a_server_error_page_has_the_headers_and_says_nothing(web: WebContext) -> None:
    """An unhandled error gives a generic 500 page with the CSP and no-store like any other."""
    app = make_app(web, routers=[probe])
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as client:
        page = client.get("/broken")
    assert page.status_code == 500 and "a bug" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
