"""The JSON API against its own OpenAPI description (schemathesis): every operation, with
generated inputs and a real operator token, answers as the description says.

The operations are walked here with Hypothesis directly rather than through schemathesis'
pytest plugin, whose lazy fixture mode reaches into pytest's private node attributes and
breaks with new pytest releases (schemathesis 4.32 beside pytest 9.2)."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi import checks

from securemail.access.model import Scope
from securemail.access.tokens import WebAccess
from securemail.web.app import make_app
from securemail.web.context import WebContext
from tests.web.conftest import ALICE, ORIGIN


def _operator_schema(app: FastAPI) -> schemathesis.BaseSchema:
    access: WebAccess = app.state.access
    access.set_operator(ALICE, True)
    _, token = access.token_add(ALICE, "schemathesis", Scope.OPERATOR)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    schema.config.headers = {"Authorization": f"Bearer {token}"}
    return schema


def _check(case: schemathesis.Case[Any]) -> None:
    # Starlette answers a method a path lacks from the first route of that path, so the
    # Allow header of GET /queue/{id} omits its DELETE twin: routing, not the API contract.
    response = case.call_and_validate(
        headers=dict(case.headers or {}), excluded_checks=[checks.allow_header_conformance]
    )
    assert response.status_code != 401, "the operator token was not sent"


def test_api_answers_as_described(web: WebContext) -> None:
    """No 5xx, every status and body documented, for generated requests to every operation."""
    schema = _operator_schema(make_app(web, origin=ORIGIN))
    checked = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the description does not load: {result}"
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        def answers(case: schemathesis.Case[Any]) -> None:
            _check(case)

        answers()
        checked.append(operation.label)
    assert len(checked) >= 10, f"too few operations described: {checked}"
