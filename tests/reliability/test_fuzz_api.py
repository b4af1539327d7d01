"""schemathesis against the served OpenAPI document: no 5xx, and every response conforms.

Bounded for CI: ``GEARS_FUZZ_EXAMPLES`` examples per operation (25 by default),
derandomized so a run is repeatable. Requests carry an admin token, so every
operation gets past authentication and its input handling is what is tested;
schemathesis also replays requests without it to check that authentication is
not ignored.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.sdk.malicious import gear_zip

EXAMPLES = int(os.environ.get("GEARS_FUZZ_EXAMPLES", "25"))

#: Checks that cannot apply to an operation, and why.
NOT_APPLICABLE = {
    # Any string is a schema-valid "file", but only a real .gear archive is accepted:
    # what makes an archive valid cannot be written as a JSON Schema.
    ("/api/v1/gears", "post"): [positive_data_acceptance],
}


@pytest.fixture(scope="module")
def fuzz_registry(registry):
    """The module registry with an approved gear and one installation to aim at."""
    data = gear_zip(manifest={"name": "acme/hello", "version": "1.0.0"})
    assert registry.publish(data).status_code == 201
    admin = registry.headers("admin")
    assert registry.client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve",
                                headers=admin).status_code == 200
    resp = registry.client.post("/api/v1/workspaces/shop/installations", headers=admin,
                                json={"gear": "acme/hello", "consent": True})
    assert resp.status_code == 201, resp.get_json()
    return registry


def _operations() -> list[tuple[str, str]]:
    from marketplace.openapi import document

    return [(path, method) for path, ops in document()["paths"].items() for method in ops
            if method in {"get", "post", "put", "patch", "delete"}]


@pytest.fixture(scope="module")
def api_schema(fuzz_registry):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_registry.app)


@pytest.mark.parametrize(("path", "method"), _operations(),
                         ids=[f"{m.upper()} {p}" for p, m in _operations()])
def test_api_conforms(api_schema, fuzz_registry, path, method):
    operation = api_schema[path][method]
    headers = fuzz_registry.headers("admin")

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers=headers,
                               excluded_checks=NOT_APPLICABLE.get((path, method), []))

    run()


#: Who calls in the conformance runs beyond the admin: every answer any of them can get
#: (401 for a bad token, 403 for a stranger, 404 for what they may not see) must be
#: documented, with its schema.
CALLERS = ["admin", "anonymous", "bad_token", "business", "other_dev"]
CALLER_EXAMPLES = max(3, EXAMPLES // 5)


def _caller_headers(registry, who: str) -> dict[str, str]:
    if who == "anonymous":
        return {}
    if who == "bad_token":
        return {"Authorization": "Bearer gears_revoked-or-never-issued"}
    return registry.headers(who)


def _run_cases(strategy, headers: dict[str, str], excluded: list) -> None:
    @given(case=strategy)
    @settings(max_examples=CALLER_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    run()


@pytest.mark.parametrize("who", CALLERS)
def test_every_caller_gets_documented_answers(api_schema, fuzz_registry, who):
    """Positive and negative data, every operation, as someone other than an admin."""
    from schemathesis import GenerationMode

    headers = _caller_headers(fuzz_registry, who)
    failures = []
    for path, method in _operations():
        operation = api_schema[path][method]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            excluded = list(NOT_APPLICABLE.get((path, method), []))
            if who != "admin":
                # A valid request from someone not allowed is rightly refused.
                excluded.append(positive_data_acceptance)

            try:
                _run_cases(operation.as_strategy(generation_mode=mode), headers, excluded)
            except Unsatisfiable:
                continue  # nothing to make invalid: no parameters, or only free strings
            except (Exception, BaseExceptionGroup) as exc:
                lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
                failures.append(f"{method.upper()} {path} [{mode.value}]: "
                                + " | ".join(lines[:6]))
    assert not failures, f"{len(failures)} operations drift from the document:\n" + \
        "\n".join(failures)


ENGINE_SPEC = "/engine/v1/openapi.json"
ENGINE_EXAMPLES = int(os.environ.get("GEARS_FUZZ_ENGINE_EXAMPLES", "10"))


def test_engine_api_conforms(fuzz_registry):
    """The engine's document, when the engine API is mounted: every operation, fewer examples."""
    if fuzz_registry.client.get(ENGINE_SPEC).status_code == 404:
        pytest.skip("the engine API is not mounted in this build")
    engine_schema = schemathesis.openapi.from_wsgi(ENGINE_SPEC, fuzz_registry.app)
    headers = fuzz_registry.headers("admin")
    operations = [r.ok() for r in engine_schema.get_all_operations()]
    assert operations
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=ENGINE_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure
            first = str(exc).strip().splitlines()
            failures.append(f"{operation.method.upper()} {operation.path}: "
                            + " | ".join(line.strip() for line in first[:8] if line.strip()))
    assert not failures, "\n".join(failures)


def test_plan_is_not_routed_as_an_installation_id(fuzz_registry):
    base = "/api/v1/workspaces/shop/installations/plan"
    admin = fuzz_registry.headers("admin")
    for method in ("patch", "delete"):
        resp = getattr(fuzz_registry.client, method)(base, headers=admin, json={})
        assert resp.status_code == 405, resp.get_json()
        assert resp.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("action", ["reject", "revet", "quarantine"])
def test_documented_max_lengths_are_enforced_as_sent(fuzz_registry, action):
    """``maxLength: 2000`` counts what was sent, trailing spaces included."""
    spec = fuzz_registry.client.get("/api/v1/openapi.json").get_json()
    assert spec["components"]["schemas"]["Reason"]["properties"]["reason"]["maxLength"] == 2000
    resp = fuzz_registry.client.post(
        f"/api/v1/admin/gears/acme/hello/1.0.0/{action}", headers=fuzz_registry.headers("admin"),
        json={"reason": "r" * 1990 + " " * 20})
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"]["details"][0]["path"] == "$.reason"
