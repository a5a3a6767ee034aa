"""Benchmark: wall time of `python -m verify check EXPR` deciding all 13 symbolic claims.

Target (issues 11 and 12): median at most 2 s on an idle 2-core machine.  The limits
count CPU time, so a busy machine changes the wall time, not the verdicts: the figure
printed says how loaded the machine was (load average).  Run:
    python benchmarks/bench_check.py
"""
import os
import resource
import statistics
import subprocess
import sys
import time

from verify.core.claims import SYMBOLIC

ORDINARY = [
    "-log(r)",
    "log(r)**2 / 2",
    "(r - 1) - log(r)",
    "log((r - 1)**2 + 1)",
    "r*log(r) - (r - 1)",
    "Abs(log(r))",
    "Min(Max(exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20), -10), 10)",
    "-log(r) + 0.5*(r - 1)",
    "(sqrt(r) - 1)**2",
    "r*log(r) - (r + 1)*log((r + 1)/2)",
    "Min((r - 1) - log(r), 10)",
    "2*((r - 1) - log(r))",
]


def main():
    claims = ",".join(SYMBOLIC)
    times, cpu = [], []
    for expr in ORDINARY:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "verify", "check", expr, "--claims", claims, "--json"],
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)  # the workers' too
        if result.returncode not in (0, 1, 3):
            raise SystemExit(f"check failed on {expr!r}: {result.stderr.strip()}")
        undecided = result.stdout.count('"undecided"')
        times.append(elapsed)
        print(f"{elapsed:6.2f} s wall {cpu[-1]:6.2f} s CPU  undecided={undecided}  {expr}")
    print(f"median {statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)} expressions "
          f"(target: median <= 2 s idle); CPU (load-independent, all processes) median "
          f"{statistics.median(cpu):.2f} s; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
