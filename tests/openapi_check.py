"""Checks a response body against the schema GET /openapi.json gives for it (jsonschema, 2020-12)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from streams.serve import openapi


def schema_errors(method: str, path: str, status: int, body: Any) -> list[str]:
    """What is wrong with `body` as the `status` answer of `method path` (a documented path
    template, e.g. /customers/{customer_id}); [] when it matches its schema."""
    doc = openapi.document()
    response = doc["paths"][path][method.lower()]["responses"][str(status)]
    schema = {**response["content"]["application/json"]["schema"], "components": doc["components"]}
    validator = Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
