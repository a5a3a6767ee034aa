"""The catalog's float32 entries counted with torch's own arithmetic.

The catalog's implementations emulate the libraries' torch code in NumPy (so that
``verify all`` needs no torch).  Where a library computes in float32, NumPy's float32
exp and torch's (SLEEF) differ by up to 2 ulps, and near r = 1 that flips the sign of
k3 on millions of 16-bit pairs: the reports' fp_nonnegative counts are NumPy's.  This
script runs the libraries' own functions (our re-implementations,
tests/data/library_functions.py) through ``verify fuzz FILE.py:FUNC --framework torch``
over every 16-bit pair of the domain, and writes their fp_nonnegative counts to
``verify/report/torch_counts.json``, which the reports quote beside NumPy's, labelled.
It also records the counts over the test suite's part of the domain
(tests/conftest.py), which tests/test_library_functions.py recomputes.

    python scripts/make_torch_counts.py      # about 4 minutes on 2 cores; needs torch
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "tests"))
# the suite's part of the domain; importing conftest also pins NumPy's loops, as the CLI does
from conftest import PART_OF_THE_DOMAIN  # noqa: E402

LIBRARY_FILE = REPO / "tests" / "data" / "library_functions.py"
OUTPUT = REPO / "verify" / "report" / "torch_counts.json"
DTYPES = ("float16", "bfloat16")
CLAIM = "fp_nonnegative"


def float32_entries(registry, catalog) -> list[str]:
    """The catalog entries whose library computes in float32 and that have a function."""
    return sorted(name for name, estimator in registry.items()
                  if estimator.usage is not None and estimator.usage.computes_in == "float32" and name in catalog)


def torch_count(function: str, options: list[str], dtype: str, domain=None) -> int:
    """The failing pairs of fp_nonnegative@dtype of one library function, with torch."""
    from verify.api import fuzz
    from verify.api.inputs import parse_assignments
    from verify.layers.floating import tolerances

    previous = tolerances.SWEEP_DOMAIN
    if domain is not None:
        tolerances.SWEEP_DOMAIN = domain
    try:
        result = fuzz(f"{LIBRARY_FILE}:{function}", [dtype], framework="torch",
                      options=parse_assignments(options, "--option", literal=True))
    finally:
        tolerances.SWEEP_DOMAIN = previous
    document = result.to_json()
    verdict = document["claims"][f"{CLAIM}@{dtype}"]
    if verdict["verdict"] == "proved":
        return 0
    return int(verdict["detail"].split(" of ")[0].replace(",", ""))


def main() -> int:
    import estimators
    import torch

    spec = importlib.util.spec_from_file_location("_library_functions", LIBRARY_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries = float32_entries(estimators.registry(), module.CATALOG)
    counts, part = {}, {}
    for name in entries:
        function, options = module.CATALOG[name]
        counts[name] = {dtype: torch_count(function, options, dtype) for dtype in DTYPES}
        part[name] = {dtype: torch_count(function, options, dtype, PART_OF_THE_DOMAIN) for dtype in DTYPES}
        print(name, counts[name], part[name], flush=True)
    document = {
        "made_by": "scripts/make_torch_counts.py",
        "torch": torch.__version__,
        "claim": CLAIM,
        "note": ("fp_nonnegative failing pairs of the library's own function (tests/data/library_functions.py) "
                 "computed with torch's arithmetic over every 16-bit pair of [-60, 0]; `part` is over the test "
                 "suite's part of the domain (tests/conftest.py)"),
        "counts": counts,
        "part_domain": list(PART_OF_THE_DOMAIN),
        "part": part,
    }
    OUTPUT.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
