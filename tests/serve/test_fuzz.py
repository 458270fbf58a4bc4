"""Property-based fuzz of the API from its own OpenAPI schema (schemathesis + Hypothesis).

For every operation, requests that follow the schema and requests that break it are generated and
sent through the ASGI app (over the unconditional models, and over a conditional and a hierarchical
one); none may be answered with a 5xx. Valid requests must also get answers
that match the documented response schema.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from vaelab.serve.routes import router

# The operations, known at collection time from the router (the app itself is built by a fixture).
OPERATIONS = sorted(
    f"{method} {route.path}"
    for route in router.routes
    for method in getattr(route, "methods", ())
    if method != "HEAD"
)
# Operations without parameters or body (health, the model list) have no invalid request to make.
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (op, GenerationMode.NEGATIVE) for op in OPERATIONS if "{" in op
]
EXAMPLES = 12  # per operation and mode: ~300 requests in all, a few seconds on the tiny models


@pytest.fixture(scope="module", params=["app", "variant_app"])
def api_schema(request):
    """The schema of each app: the unconditional models', and the conditional and hierarchical ones'."""
    return schemathesis.openapi.from_asgi("/openapi.json", request.getfixturevalue(request.param))


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=[f"{op} {mode.value}" for op, mode in CASES])
def test_no_server_errors(api_schema, operation, mode):
    method, path = operation.split(" ", 1)
    op = api_schema[path][method]
    strategy = op.as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call()
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
        if mode is GenerationMode.POSITIVE and response.status_code == 200:
            case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400:
            content_type = response.headers.get("content-type", [""])  # schemathesis: a list per header
            assert content_type[0].startswith("application/json"), content_type
            assert "detail" in response.json()

    check()


def test_operations_cover_the_api():
    for name in ("sample", "reconstruct", "encode", "decode", "interpolate", "traverse"):
        assert f"POST /api/models/{{model_id}}/{name}" in OPERATIONS
    assert "GET /api/models/{model_id}" in OPERATIONS
