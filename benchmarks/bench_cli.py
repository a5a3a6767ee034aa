"""Start-up time of the CLI: `kl-verify --help`, `--version` and bad input, each in a fresh
process (what a user waits for).  Target: every case <= 0.3 s (median of REPEATS runs).

    python benchmarks/bench_cli.py

Prints one line per case (median and worst wall time) and the Python start-up alone for
reference.  Timings depend on load: say what else was running when quoting them.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPEATS = 7
TARGET = 0.3
CASES = [
    ("python start-up alone (reference)", ["-c", "pass"]),
    ("--help", ["-m", "verify", "--help"]),
    ("--version", ["-m", "verify", "--version"]),
    ("check --help", ["-m", "verify", "check", "--help"]),
    ("unknown command", ["-m", "verify", "nonsense"]),
    ("check: unknown claim", ["-m", "verify", "check", "k3", "--claims", "bogus"]),
    ("check: unknown estimator", ["-m", "verify", "check", "no_such_estimator"]),
    ("check: bad timeout", ["-m", "verify", "check", "k3", "--timeout", "0"]),
    ("check: not a Python file", ["-m", "verify", "check", "/etc/passwd:x"]),
    ("check: unsafe expression", ["-m", "verify", "check", "__import__('os')"]),
    ("claims: unknown name", ["-m", "verify", "claims", "sideways"]),
    ("all: bad --jobs", ["-m", "verify", "all", "--jobs", "0"]),
    ("fuzz: unknown dtype", ["-m", "verify", "fuzz", "k3", "--dtypes", "float8"]),
    ("moments: bad spec", ["-m", "verify", "moments", "k3", "--p", "norm(0, 1", "--q", "norm(0, 1)"]),
    ("moments: unknown estimator", ["-m", "verify", "moments", "no_such_estimator", "--p", "norm(0, 1)",
                                    "--q", "norm(0, 1)"]),
    ("gradients: unknown mode", ["-m", "verify", "gradients", "k3", "--mode", "sideways"]),
    ("gradients: unknown estimator", ["-m", "verify", "gradients", "no_such_estimator"]),
]


def wall(args) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True)
    return time.perf_counter() - start


def main():
    print(f"CLI start-up, median and worst of {REPEATS} fresh processes (target <= {TARGET} s)")
    slow = []
    for label, args in CASES:
        times = [wall(args) for _ in range(REPEATS)]
        median = statistics.median(times)
        flag = "" if median <= TARGET or label.startswith("python") else "  over target"
        if flag:
            slow.append(label)
        print(f"  {label:<34} median {median:6.3f} s   worst {max(times):6.3f} s{flag}")
    print("all within target" if not slow else f"over target: {', '.join(slow)}")


if __name__ == "__main__":
    main()
