"""The JSON documents every command prints and their schemas (``verify/schemas/``)."""
from __future__ import annotations

from typing import Any, Mapping

from verify.errors import UsageError

# Version of every JSON document (`--json` outputs and results.json).  Bump it when a key
# changes meaning or disappears; new keys may appear without a bump (schemas allow them).
SCHEMA_VERSION = 2


def json_document(kind: str, payload: Any) -> dict:
    """The JSON object every command prints: ``schema_version``, ``kind``, then the payload
    (a dict is merged in; a list goes under ``items``)."""
    head = {"schema_version": SCHEMA_VERSION, "kind": kind}
    if isinstance(payload, Mapping):
        return {**head, **payload}
    return {**head, "items": list(payload)}


SCHEMA_KINDS = ("check", "fuzz", "moments", "gradients", "term_gradients", "failure", "results",
                "fuzz_function", "sequences")


def schema(kind: str) -> dict:
    """The JSON Schema of a document kind (package data ``verify/schemas/<kind>.json``)."""
    import json
    from importlib.resources import files

    if kind not in SCHEMA_KINDS + ("verdict", "number"):
        raise UsageError(f"unknown schema {kind!r}; known: {', '.join(SCHEMA_KINDS)}")
    return json.loads(files("verify").joinpath("schemas", f"{kind}.json").read_text(encoding="utf-8"))


def validate(document: dict, kind: str | None = None) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` follows its schema (``kind``:
    the document's own ``kind`` field, or ``results`` for results.json).  Needs jsonschema."""
    import jsonschema
    from referencing import Registry, Resource

    kind = kind or document.get("kind", "results")
    resources = [(f"https://kl-verify/schemas/{name}.json", Resource.from_contents(schema(name)))
                 for name in SCHEMA_KINDS + ("verdict", "number")]
    validator = jsonschema.Draft202012Validator(schema(kind), registry=Registry().with_resources(resources))
    validator.validate(document)
