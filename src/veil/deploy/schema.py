"""Argo CD objects checked against the CRD schemas Argo CD installs — and stricter than them.

The CRDs' `openAPIV3Schema` is JSON-Schema-shaped; none of its object nodes forbids unknown
fields, so an `Application` with a misspelt `valueObject` would pass it and Argo CD would silently
ignore the values. Each object is therefore validated twice with `jsonschema`: against the schema
as Argo CD has it, and against a strict copy in which every object node that names its
properties refuses any other (`additionalProperties: false`), except where the schema says the
content is free (`x-kubernetes-preserve-unknown-fields`, e.g. Helm's `valuesObject`) or a map
(`additionalProperties: {...}`, e.g. labels).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from veil.errors import Problem

__all__ = ["GROUP_VERSION", "KINDS", "validate_object", "validate_objects"]

GROUP_VERSION = "argoproj.io/v1alpha1"
KINDS = {"Application": "application.json", "AppProject": "appproject.json"}
# metadata.name of a namespaced object: a DNS-1123 subdomain
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _crd_schema(kind: str) -> dict[str, Any]:
    text = resources.files("veil.deploy").joinpath("schemas", KINDS[kind]).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    # The CRD leaves apiVersion, kind and metadata to the API server; check them here.
    schema["properties"]["apiVersion"] = {"const": GROUP_VERSION}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name", "namespace"],
        "properties": {
            "name": {"type": "string", "pattern": _NAME.pattern, "maxLength": 253},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}},
        },
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    free = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not free:
        out["additionalProperties"] = False
    return out


@functools.cache
def _validators(kind: str) -> tuple[Draft202012Validator, Draft202012Validator]:
    schema = _crd_schema(kind)
    strict = _strict(copy.deepcopy(schema))
    return Draft202012Validator(schema), Draft202012Validator(strict)


def _where(error: Any) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]"
                    for p in error.absolute_path).replace(".[", "[")


def validate_object(obj: dict[str, Any], *, file: str = "<generated>") -> list[Problem]:
    """Every way `obj` breaks the CRD schema, then every field the schema does not name."""
    kind = obj.get("kind")
    if kind not in KINDS:
        return [Problem("not an Argo CD object Veil writes", file=file, path="kind",
                        value=kind, allowed=", ".join(KINDS))]
    loose, strict = _validators(str(kind))
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in sorted(loose.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        seen.add((_where(err), err.message))
        problems.append(Problem(f"{kind} schema: {err.message}", file=file, path=_where(err)))
    for err in sorted(strict.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator != "additionalProperties" or (_where(err), err.message) in seen:
            continue
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known)) if isinstance(err.instance, dict) else []
        for name in extra:
            path = f"{_where(err)}.{name}" if _where(err) else name
            problems.append(Problem(
                f"{kind}: field `{name}` is not in Argo CD's schema (Argo CD would ignore it)",
                file=file, path=path, allowed=", ".join(known) or None))
    return problems


def validate_objects(objects: dict[str, dict[str, Any]]) -> list[Problem]:
    """Problems of several objects, keyed by the file each is written to."""
    out: list[Problem] = []
    for file, obj in sorted(objects.items()):
        if obj.get("apiVersion") == GROUP_VERSION:
            out.extend(validate_object(obj, file=file))
    return out
