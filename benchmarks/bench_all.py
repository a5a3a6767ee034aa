"""Benchmark: `python -m verify all` cold, with nothing changed, and after adding a
one-file estimator (plus `--only` for it).  Targets (2 cores idle): cold
(`--fresh`) <= 5 min; nothing changed <= 10 s with 0 cells computed; a new one-file
estimator <= 60 s for `verify all` and <= 45 s for `--only NAME`.

Everything runs on a copy of the checkout in a temporary folder with its own cache, so
the committed reports and the local cache stay as they are.  Run:
    python benchmarks/bench_all.py [--warm]     # --warm: start from this checkout's cache, skip the cold run
"""
import argparse
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEW_ESTIMATOR = '''"""A one-file estimator added for the benchmark: k2 written in the input dtype."""
import numpy as np

from estimators import Estimator


def _numeric(logp, logq):
    log_ratio = logp - logq
    return log_ratio * log_ratio / np.asarray(2, dtype=log_ratio.dtype)


bench_k2 = Estimator(name="bench_k2", expr="log(r)**2/2", numeric=_numeric,
                     claims=("nonnegative", "fp_nonnegative", "fp_finite"))
'''


def _run(checkout, *args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "verify", "all", *args], cwd=checkout, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    cells = re.search(r"cells: .*", done.stdout)
    return elapsed, cpu, done.returncode, cells.group(0) if cells else done.stdout[-500:] + done.stderr[-500:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", action="store_true", help="skip the cold run")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkout = Path(folder) / "checkout"
        shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".git", ".venv*", "__pycache__",
                                                                        ".kl_verify_cache", ".hypothesis"))
        if options.warm and (REPO / ".kl_verify_cache").is_dir():
            shutil.copytree(REPO / ".kl_verify_cache", checkout / ".kl_verify_cache")
        steps = [] if options.warm else [("cold: verify all --fresh", ["--fresh"], 300)]
        steps += [("verify all, nothing changed", [], 10)] * 2
        for label, args, target in steps:
            elapsed, cpu, code, cells = _run(checkout, *args)
            print(f"{label}: {elapsed:.1f} s wall, {cpu:.0f} s CPU, exit {code}; {cells} (target <= {target} s)")
        (checkout / "estimators" / "bench_k2.py").write_text(NEW_ESTIMATOR)
        elapsed, cpu, code, cells = _run(checkout)
        print(f"verify all after adding a one-file estimator (its cells computed, the rest reused): {elapsed:.1f} s "
              f"wall, {cpu:.0f} s CPU, exit {code}; {cells} (target <= 60 s)")
        elapsed, cpu, code, cells = _run(checkout, "--only", "bench_k2", "--fresh")
        print(f"verify all --only bench_k2 --fresh (its cells only, computed): {elapsed:.1f} s wall, {cpu:.0f} s CPU, "
              f"exit {code}; {cells} (target <= 45 s)")

if __name__ == "__main__":
    main()
