"""Benchmark: CPU time of every symbolic verdict on the registry against its limit.

The symbolic layer's limits count the worker's CPU time (verify/core/timelimit.py), so a
verdict does not depend on the machine's load.  This prints, for every registered
estimator and every claim, the CPU seconds used and the margin (limit / used); the target
is at least 5x everywhere.  With --busy N, N busy-loop processes run alongside
and the verdicts are compared with an idle run: they must be identical.

Run:
    python benchmarks/bench_margin.py [--timeout S] [--busy 2]
"""
import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import estimators  # noqa: E402
from verify.core.claims import SYMBOLIC  # noqa: E402
from verify.core.expression import as_expression_with_domain  # noqa: E402
from verify.layers.symbolic import DEFAULT_TIMEOUT, SYMPY_SHARE, decide  # noqa: E402

REQUIRED_MARGIN = 5.0


def _burn(stop):
    while not stop.is_set():
        pass


def verdicts_and_cpu(timeout):
    """name -> ({claim: verdict}, {claim or "analysis": CPU seconds}) over the registry."""
    out = {}
    for name, estimator in sorted(estimators.registry().items()):
        expr, domain = as_expression_with_domain(estimator.expr)
        used = {}
        verdicts = decide(expr, list(SYMBOLIC), timeout=timeout, domain=domain, cpu_times=used)
        out[name] = ({c: v.verdict for c, v in verdicts.items()}, used)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="CPU seconds per claim")
    parser.add_argument("--busy", type=int, default=0, help="also run with N busy processes and compare")
    args = parser.parse_args()
    start = time.perf_counter()
    idle = verdicts_and_cpu(args.timeout)
    wall = time.perf_counter() - start
    worst = (0.0, None)
    print(f"CPU seconds per verdict (limit {args.timeout:g} s per claim; sympy's part of a sign argument "
          f"{SYMPY_SHARE * args.timeout:g} s)")
    for name, (verdicts, used) in idle.items():
        top = max(used, key=lambda c: used[c] or 0)
        print(f"  {name:24s} analysis {used['analysis']:.2f} s, slowest claim {top} {used[top]:.2f} s, "
              f"total {sum(v or 0 for v in used.values()):.2f} s")
        for claim, seconds in used.items():
            if seconds is not None and seconds > worst[0]:
                worst = (seconds, f"{name}/{claim}")
    margin = args.timeout / worst[0] if worst[0] else float("inf")
    undecided = sum(v == "undecided" for verdicts, _ in idle.values() for v in verdicts.values())
    print(f"largest: {worst[0]:.2f} s ({worst[1]}); margin {margin:.0f}x (required {REQUIRED_MARGIN:g}x); "
          f"{undecided} undecided; {wall:.1f} s wall for the registry")
    if args.busy:
        stop = mp.Event()
        burners = [mp.Process(target=_burn, args=(stop,)) for _ in range(args.busy)]
        for process in burners:
            process.start()
        try:
            start = time.perf_counter()
            busy = verdicts_and_cpu(args.timeout)
            busy_wall = time.perf_counter() - start
        finally:
            stop.set()
            for process in burners:
                process.join()
        changed = [(name, claim) for name in idle for claim in SYMBOLIC
                   if idle[name][0][claim] != busy[name][0][claim]]
        print(f"with {args.busy} busy processes: {busy_wall:.1f} s wall; verdicts changed: {len(changed)} "
              f"{changed if changed else ''}")
    return 0 if margin >= REQUIRED_MARGIN else 1


if __name__ == "__main__":
    raise SystemExit(main())
