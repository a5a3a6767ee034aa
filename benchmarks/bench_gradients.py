"""Time of the whole gradient table: every registered estimator, every mode (target < 20 s).

Run: python benchmarks/bench_gradients.py   (prints the figures; nothing is asserted)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimators import registry  # noqa: E402
from verify.layers import gradients  # noqa: E402

TARGET_SECONDS = 20.0


def main() -> None:
    estimators = registry()
    start = time.perf_counter()
    rows = 0
    per_estimator = {}
    for name in sorted(estimators):
        begin = time.perf_counter()
        rows += len(gradients.gradient_table(estimators[name]))
        per_estimator[name] = time.perf_counter() - begin
    total = time.perf_counter() - start
    for name, seconds in per_estimator.items():
        print(f"  {name:<24} {seconds:7.3f} s")
    print(f"gradient table: {len(estimators)} estimators (catalog entries in their library modes, the others "
          f"in {len(gradients.MODES)} modes) x {len(gradients.PAIRS)} pairs = {rows} rows in {total:.2f} s "
          f"(target < {TARGET_SECONDS:g} s: {'met' if total < TARGET_SECONDS else 'MISSED'})")


if __name__ == "__main__":
    main()
