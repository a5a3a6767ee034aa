"""Time of the floating-point layer: the ci profile per estimator and dtype, and the
exhaustive 16-bit fp_nonnegative enumeration (thorough profile).  Prints the figures.

    python benchmarks/bench_floating.py            # ci profile, whole registry
    python benchmarks/bench_floating.py --exhaustive k3 k2
"""
import sys
import time

from estimators import registry
from verify import floating
from verify.claims import DTYPES, FLOATING


def bench_ci(names):
    known = registry()
    for name in names:
        for dtype in DTYPES:
            start = time.perf_counter()
            floating.check_claims(known[name], [f"{c}@{dtype}" for c in FLOATING], profile="ci")
            print(f"ci  {name:<11} {dtype:<9} {time.perf_counter() - start:6.2f} s", flush=True)


def bench_exhaustive(names):
    known = registry()
    for name in names:
        for dtype in ("float16", "bfloat16"):
            estimator = known[name]
            run = floating._DtypeRun(floating.DTYPE_INFO[dtype], estimator.numeric,
                                     floating.Reference(estimator.expr), floating.ACCURATE_ULPS)
            start = time.perf_counter()
            floating._exhaustive_nonnegative(run)
            print(f"exhaustive fp_nonnegative {name:<11} {dtype:<9} {run.sources['exhaustive']} pairs "
                  f"{time.perf_counter() - start:6.1f} s", flush=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--exhaustive"]:
        bench_exhaustive(arguments[1:] or ["k2", "k3"])
    else:
        bench_ci(arguments or sorted(n for n, e in registry().items() if e.numeric is not None))
