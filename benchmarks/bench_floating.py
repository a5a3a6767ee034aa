"""Time of the floating-point layer.  Prints the figures.

    python benchmarks/bench_floating.py                  # exhaustive 16-bit: all four claims,
                                                         # one estimator, one dtype (target <= 10 s)
    python benchmarks/bench_floating.py k2 examples/libraries.py:verl_low_var_kl
    python benchmarks/bench_floating.py --search          # float32/float64 search, ci profile

Each exhaustive line: all four claims over every (logp, logq) pair of the dtype in
[-60, 0], swept by one process per core; the time includes the implementation's own
(it is called on every pair), the CPU that of every process.  The CPU is then split
into the implementation's own evaluation (timed around each of its calls, in every
worker) and the harness's share (everything else: enumeration, enclosures, decisions,
mpmath, process start-up).  ``--repeat N`` runs each line N times; ``--no-kernel``
measures the NumPy sweep without the compiled kernel (numba).
"""
import resource
import sys
import time

from estimators import registry
from verify.layers import floating
from verify.layers.floating.checks import runs_by_dtype
from verify.layers.floating.sixteen_bit import sweep_processes
from verify.layers.floating.verdicts import verdict_in_dtype
from verify.core.claims import FLOATING
from verify.api.targets import resolve


def _cpu():
    """User + system CPU seconds of this process and of its finished children (the
    sweep's forked workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_exhaustive(targets, repeat=1):
    from verify.layers.floating.kernel import load_numba

    kernel = "compiled kernel" if load_numba() is not None else "NumPy only"  # loaded outside the timing
    print(f"exhaustive sweep: {kernel}, {sweep_processes()} process(es)", flush=True)
    for target in targets:
        estimator = resolve(target)
        for dtype in floating.SIXTEEN_BIT:
            for _ in range(repeat):
                start, cpu = time.perf_counter(), _cpu()
                runs = runs_by_dtype(estimator, {dtype: list(FLOATING)}, "ci")
                run, values = runs[dtype]
                verdicts = {c: verdict_in_dtype(run, c, "ci", values) for c in FLOATING}
                elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
                own = run.exhaustive.implementation_cpu if run.exhaustive is not None else float("nan")
                summary = ", ".join(f"{c} {v.verdict}" for c, v in verdicts.items())
                print(f"exhaustive {estimator.name:<22} {dtype:<9} {elapsed:6.1f} s wall, {cpu:6.1f} s CPU "
                      f"(target <= 10 s): implementation {own:5.1f} s CPU, harness {cpu - own:5.1f} s CPU  "
                      f"({summary})", flush=True)


def bench_search(names):
    known = registry()
    for name in names:
        for dtype in ("float32", "float64"):
            start = time.perf_counter()
            floating.check_claims(known[name], FLOATING, dtype, profile="ci")
            print(f"search ci  {name:<11} {dtype:<9} {time.perf_counter() - start:6.2f} s", flush=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--search"]:
        bench_search(arguments[1:] or sorted(n for n, e in registry().items() if e.numeric is not None))
    else:
        repeat = 1
        if "--no-kernel" in arguments:
            from verify.layers.floating import kernel

            kernel._NUMBA = False
            arguments.remove("--no-kernel")
        if "--repeat" in arguments:
            at = arguments.index("--repeat")
            repeat = int(arguments[at + 1])
            del arguments[at:at + 2]
        bench_exhaustive(arguments or ["k1", "examples/libraries.py:verl_low_var_kl"], repeat)
