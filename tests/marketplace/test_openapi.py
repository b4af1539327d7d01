"""The OpenAPI document: valid, complete against the route table, true to real responses."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def spec(client) -> dict[str, Any]:
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    return resp.json


def test_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate_spec(spec)


def _api_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def test_every_route_is_documented_and_nothing_else(app, spec):
    documented = {(path, m) for path, ops in spec["paths"].items() for m in ops if m in HTTP_METHODS}
    routes = _api_routes(app)
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations with no route"


class ResponseChecker:
    """Validates real responses against the document's schema for their status."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.registry = Registry().with_resource("urn:api", Resource.from_contents(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", **spec}))
        self.checked: set[tuple[str, str, str]] = set()

    def __call__(self, path: str, method: str, resp) -> None:
        op = self.spec["paths"][path][method]
        status = str(resp.status_code)
        assert status in op["responses"], f"{method.upper()} {path} answered undocumented {status}"
        content = op["responses"][status].get("content", {})
        if "application/json" in content:
            schema = content["application/json"]["schema"]
            if "$ref" in schema:
                schema = {"$ref": schema["$ref"].replace("#/", "urn:api#/")}
            validator = Draft202012Validator(schema, registry=self.registry)
            errors = sorted(validator.iter_errors(resp.json), key=str)
            assert not errors, f"{method.upper()} {path} {status}: {errors[0].message}"
        self.checked.add((path, method, status))


def test_real_responses_match_the_document(client, spec, make_user, make_publisher, make_token,
                                           make_gear_archive, make_workspace):
    check = ResponseChecker(spec)
    dev = make_user(role="developer")
    admin = make_user(role="admin")
    make_publisher(name="acme", owner=dev)
    dev_h = {"Authorization": f"Bearer {make_token(dev, ['publish:acme'])}"}
    admin_h = {"Authorization": f"Bearer {make_token(admin, ['admin'])}"}
    base = "/api/v1/gears/{publisher}/{name}/{version}"

    def publish(data: bytes, headers: dict[str, str]):
        return client.post("/api/v1/gears", headers=headers,
                           data={"file": (io.BytesIO(data), "g.gear")},
                           content_type="multipart/form-data")

    data = make_gear_archive("acme/hello", "1.0.0")
    check("/api/v1/gears", "post", publish(data, dev_h))
    check("/api/v1/gears", "post", publish(data, dev_h))  # 409
    check("/api/v1/gears", "post", publish(data, {}))  # 401
    check("/api/v1/gears", "post", publish(b"not a zip", dev_h))  # 400
    check("/api/v1/gears", "post", publish(make_gear_archive("globex/x", "1.0.0"), dev_h))  # 403
    check("/api/v1/whoami", "get", client.get("/api/v1/whoami", headers=dev_h))
    check("/api/v1/whoami", "get", client.get("/api/v1/whoami"))
    check("/api/v1/admin/gears/{publisher}/{name}/{version}/approve", "post",
          client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=dev_h))  # 403
    check("/api/v1/admin/gears/{publisher}/{name}/{version}/approve", "post",
          client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=admin_h))
    check("/api/v1/gears", "get", client.get("/api/v1/gears?q=hello"))
    check("/api/v1/gears", "get", client.get("/api/v1/gears?page=0"))  # 422
    check("/api/v1/gears/{publisher}/{name}", "get", client.get("/api/v1/gears/acme/hello"))
    check("/api/v1/gears/{publisher}/{name}", "get", client.get("/api/v1/gears/acme/none"))
    check(base, "get", client.get("/api/v1/gears/acme/hello/1.0.0"))
    check(base, "get", client.get("/api/v1/gears/acme/hello/9.9.9"))
    check(base + "/download", "get", client.get("/api/v1/gears/acme/hello/1.0.0/download"))
    check(base + "/yank", "post", client.post("/api/v1/gears/acme/hello/1.0.0/yank",
                                              headers=dev_h, json={}))  # 422
    check(base + "/yank", "post", client.post("/api/v1/gears/acme/hello/1.0.0/yank",
                                              headers=dev_h, json={"reason": "bad default"}))
    check(base + "/unyank", "post", client.post("/api/v1/gears/acme/hello/1.0.0/unyank",
                                                headers=dev_h))
    check(base + "/unyank", "post", client.post("/api/v1/gears/acme/hello/1.0.0/unyank",
                                                headers=dev_h))  # 409
    publish(make_gear_archive("acme/hello", "1.1.0"), dev_h)
    check("/api/v1/admin/gears/{publisher}/{name}/{version}/reject", "post",
          client.post("/api/v1/admin/gears/acme/hello/1.1.0/reject", headers=admin_h,
                      json={"reason": "no README"}))
    check("/api/v1/openapi.json", "get", client.get("/api/v1/openapi.json"))
    _walk_installations(client, check, make_user, make_workspace, make_token, admin_h)
    _walk_trust(client, check, dev_h, admin_h)

    # Every documented operation was exercised at least once.
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops if m in HTTP_METHODS}
    assert documented <= {(p, m) for p, m, _ in check.checked}


def _walk_installations(client, check, make_user, make_workspace, make_token, admin_h) -> None:
    """Installations in workspace "shop"; acme/hello 1.0.0 is approved and public by now."""
    member, outsider = make_user(role="business"), make_user(role="business")
    make_workspace(member=member, name="shop")
    h = {"Authorization": f"Bearer {make_token(member, ['workspace:shop'])}"}
    other_h = {"Authorization": f"Bearer {make_token(outsider, ['read'])}"}
    items = "/api/v1/workspaces/{ws}/installations"
    one = items + "/{installation_id}"
    url = "/api/v1/workspaces/shop/installations"

    check(items, "get", client.get(url, headers=h))
    check(items, "get", client.get(url))  # 401
    check(items, "get", client.get(url, headers=other_h))  # 403
    check(items, "get", client.get("/api/v1/workspaces/none/installations",
                                   headers=admin_h))  # 404
    check(items + "/plan", "get", client.get(f"{url}/plan?gear=acme/hello", headers=h))
    check(items + "/plan", "get", client.get(f"{url}/plan?gear=acme/none", headers=h))  # 404
    check(items + "/plan", "get", client.get(f"{url}/plan", headers=h))  # 422
    check(items + "/plan", "get", client.get(f"{url}/plan?gear=acme/hello&version=9.0.0",
                                             headers=h))  # 409
    check(items, "post", client.post(url, headers=h, json={"gear": "acme/hello"}))  # 422
    created = client.post(url, headers=h, json={"gear": "acme/hello", "consent": True})
    check(items, "post", created)
    check(items, "post", client.post(url, headers=h, json={"gear": "acme/hello",
                                                            "consent": True}))  # 409
    check(items, "post", client.post(url, headers=h, data="x",
                                     content_type="application/json"))  # 400
    path = f"{url}/{created.json['id']}"
    check(one, "get", client.get(path, headers=h))
    check(one, "get", client.get(f"{url}/{'0' * 32}", headers=h))  # 404
    check(one, "patch", client.patch(path, headers=h, json={"enabled": False}))
    check(one, "patch", client.patch(path, headers=h, json={"enabled": "no"}))  # 422
    check(one, "patch", client.patch(path, headers=h, json={"version": "9.0.0"}))  # 409
    check(items + "/plan", "get", client.get(f"{url}/plan?gear=acme/hello", headers=h))
    check(one, "delete", client.delete(path, headers=h))
    check(one, "delete", client.delete(path, headers=h))  # 404


def _walk_trust(client, check, dev_h, admin_h) -> None:
    """Keys, the kill list, quarantine and re-vetting (acme/hello 1.0.0 is approved)."""
    admin = "/api/v1/admin/gears/{publisher}/{name}/{version}"
    url = "/api/v1/admin/gears/acme/hello/1.0.0"
    check("/api/v1/keys", "get", client.get("/api/v1/keys"))
    check(admin + "/quarantine", "post", client.post(url + "/quarantine", headers=dev_h,
                                                      json={"reason": "x"}))  # 403
    check(admin + "/quarantine", "post", client.post(url + "/quarantine", headers=admin_h,
                                                      json={}))  # 422
    check(admin + "/quarantine", "post", client.post(url + "/quarantine", headers=admin_h,
                                                      json={"reason": "steals data"}))
    check("/api/v1/killlist", "get", client.get("/api/v1/killlist"))
    check(admin + "/unquarantine", "post", client.post(url + "/unquarantine", headers=admin_h,
                                                        json={"reason": "false alarm"}))
    check(admin + "/unquarantine", "post", client.post(url + "/unquarantine", headers=admin_h,
                                                        json={"reason": "again"}))  # 409
    check(admin + "/revet", "post", client.post(url + "/revet", headers=admin_h))
    check(admin + "/revet", "post", client.post(url + "/revet", headers=dev_h))  # 403
    check("/api/v1/gears/{publisher}/{name}/{version}", "get",
          client.get("/api/v1/gears/acme/hello/1.0.0", headers=admin_h))


def test_both_documents_describe_a_problem_with_the_one_shape():
    """The registry's and the engine's documents share the Problem schema, and it names
    exactly the fields of gears_sdk.errors.problem()."""
    from gears_sdk.errors import problem
    from marketplace.engine.openapi import document as engine_document
    from marketplace.openapi import document as registry_document

    registry, engine = (d()["components"]["schemas"]["Problem"]
                        for d in (registry_document, engine_document))
    assert registry == engine
    assert set(registry["properties"]) == set(problem("$.x", "wrong"))
