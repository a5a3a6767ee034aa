"""What `verify all` exits with: the gate a library's CI runs on its estimators."""
from __future__ import annotations

import json

from verify.core.claims import (EXIT_OK, EXIT_REFUTED, EXIT_UNDECIDED, LAYERS, REFUTED, SYMBOLIC, UNDECIDED,
                                 expand_claims)
from verify.errors import UsageError


def parse_layers(text: str) -> tuple[str, ...]:
    """Layer names from a comma-separated list, checked."""
    layers = tuple(layer.strip() for layer in text.split(",") if layer.strip())
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or not layers:
        raise UsageError(f"unknown layer {unknown[0] if unknown else '(none)'!r}; known: {', '.join(LAYERS)}")
    return layers


def gate(results, strict: bool = False) -> tuple[int, list[str]]:
    """The exit code of ``verify all`` and the lines that explain it: a disagreement
    between layers or a refuted declared claim fails (1), an undecided one is 3, and
    with ``strict`` any undecided claim is."""
    lines, code = [], EXIT_OK
    for problem in results["disagreements"]:
        lines.append(f"DISAGREEMENT (harness bug): {problem}")
        code = EXIT_REFUTED
    for name, record in results["estimators"].items():
        declared = [c for c in expand_claims(record["declared"])
                    if ("symbolic" if c in SYMBOLIC else "floating") in results["layers"]]
        for error in record["errors"]:
            lines.append(f"{name}: layer error: {error}")
        for claim in declared:
            verdict = record["claims"].get(claim)
            if verdict is None:
                lines.append(f"{name}: declared claim {claim} was not decided (layer error)")
                code = max(code, EXIT_UNDECIDED) if code != EXIT_REFUTED else code
            elif verdict["verdict"] == REFUTED:
                example = json.dumps(verdict["counterexample"], sort_keys=True)
                lines.append(f"{name}: declared claim {claim} is REFUTED: {verdict['detail']}; counterexample {example}")
                code = EXIT_REFUTED
            elif verdict["verdict"] == UNDECIDED and code != EXIT_REFUTED:
                lines.append(f"{name}: declared claim {claim} is undecided: {verdict['detail']}")
                code = EXIT_UNDECIDED
        if strict and code != EXIT_REFUTED:
            for claim, verdict in record["claims"].items():
                if verdict["verdict"] == UNDECIDED and claim not in declared:
                    lines.append(f"{name}: {claim} is undecided (--strict)")
                    code = EXIT_UNDECIDED
    return code, lines
