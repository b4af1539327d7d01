"""Pieces of the OpenAPI document shared by the modules that describe endpoints.

:mod:`marketplace.openapi` builds the document and merges in
:mod:`marketplace.registry.openapi_trust`; both use these helpers, so they live
below both instead of privately in one of them. The engine's document
(:mod:`marketplace.engine.openapi`) shares the shape of a problem.
"""

from __future__ import annotations

from typing import Any

_REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
DATE = {"type": "string", "format": "date-time"}


#: One problem in an error's ``details`` (:data:`gears_sdk.errors.ProblemDetail`), in
#: both the registry's and the engine's document.
PROBLEM: dict[str, Any] = {
    "type": "object",
    "required": ["message"],
    "properties": {"path": STR, "message": STR, "code": STR},
}


def json_content(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref(schema)}}}


def errors(*codes: int) -> dict[str, Any]:
    words = {400: "Bad request", 401: "No valid token", 403: "Not allowed", 404: "Not found",
             409: "Conflict with the current state", 413: "Upload too large",
             422: "Invalid input; details lists every problem",
             503: "A backing service is unavailable"}
    return {str(c): {"description": words[c], **json_content("Error")} for c in codes}


def gear_params(with_version: bool = False) -> list[dict[str, Any]]:
    names = ["publisher", "name"] + (["version"] if with_version else [])
    return [{"name": n, "in": "path", "required": True, "schema": STR} for n in names]


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def state_change(summary: str, who: str, with_body: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": who,
        "parameters": gear_params(True),
        "security": [{"bearer": []}],
        "responses": {"200": {"description": "The version after the change", **json_content("Version")},
                      **errors(400, 401, 403, 404, 409, 422)},
    }
    if with_body:
        op["requestBody"] = {"required": False, **json_content("Reason")}
    return {"post": op}
