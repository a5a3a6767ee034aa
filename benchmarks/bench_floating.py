"""Time of the floating-point layer.  Prints the figures.

    python benchmarks/bench_floating.py                  # exhaustive 16-bit: all four claims,
                                                         # one estimator, one dtype (target <= 10 s)
    python benchmarks/bench_floating.py k2 examples/libraries.py:verl_low_var_kl
    python benchmarks/bench_floating.py --search          # float32/float64 search, ci profile

Each exhaustive line: all four claims over every (logp, logq) pair of the dtype in
[-60, 0], swept by one process per core; the time includes the implementation's own
(it is called on every pair), the CPU that of every process.
"""
import resource
import sys
import time

from estimators import registry
from verify import floating
from verify.claims import FLOATING
from verify.targets import resolve


def _cpu():
    """User + system CPU seconds of this process and of its finished children (the
    sweep's forked workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_exhaustive(targets):
    for target in targets:
        estimator = resolve(target)
        for dtype in floating.SIXTEEN_BIT:
            start, cpu = time.perf_counter(), _cpu()
            verdicts = floating.check_claims(estimator, [f"{c}@{dtype}" for c in FLOATING], profile="ci")
            elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
            summary = ", ".join(f"{c.split('@')[0]} {v.verdict}" for c, v in verdicts.items())
            print(f"exhaustive {estimator.name:<22} {dtype:<9} {elapsed:6.1f} s wall, {cpu:6.1f} s CPU "
                  f"(target <= 10 s)  ({summary})", flush=True)


def bench_search(names):
    known = registry()
    for name in names:
        for dtype in ("float32", "float64"):
            start = time.perf_counter()
            floating.check_claims(known[name], [f"{c}@{dtype}" for c in FLOATING], profile="ci")
            print(f"search ci  {name:<11} {dtype:<9} {time.perf_counter() - start:6.2f} s", flush=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--search"]:
        bench_search(arguments[1:] or sorted(n for n, e in registry().items() if e.numeric is not None))
    else:
        bench_exhaustive(arguments or ["k1", "examples/libraries.py:verl_low_var_kl"])
