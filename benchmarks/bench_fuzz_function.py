"""Time of `verify fuzz FILE.py:FUNC --framework torch` on a library's own k3 (written as
OpenRLHF writes it, float32 inside) against `verify fuzz k3` on the registry's NumPy k3:
the 16-bit sweeps over the whole of [-60, 0], float16 and bfloat16.

Run: python benchmarks/bench_fuzz_function.py [--dtypes float16,bfloat16]
(prints wall-clock and CPU seconds of each command and the ratio; nothing is asserted).
Target (the library-function issue): the torch sweep within 2x its NumPy twin's time.
Each command runs as a user runs it (a fresh `python -m verify`, start-up included); the
NumPy sweep forks a worker per core, the torch sweep runs in one process, one thread.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K3 = '''
import torch


def compute_approx_kl(log_probs, log_probs_base, kl_estimator="k3"):
    log_ratio = log_probs.float() - log_probs_base.float()
    log_ratio = -log_ratio
    log_ratio = log_ratio.exp() - 1 - log_ratio
    return log_ratio
'''


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv):
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, "-m", "verify", *argv], cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    verdicts = [line.split()[1:3] for line in done.stdout.splitlines() if line.startswith("* ")]
    return time.perf_counter() - start, _children_cpu() - cpu, ", ".join(" ".join(v) for v in verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float16,bfloat16")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "openrlhf_k3.py"
        path.write_text(K3)
        for dtype in options.dtypes.split(","):
            numpy_wall, numpy_cpu, numpy_verdicts = _timed(["fuzz", "k3", "--dtypes", dtype])
            torch_wall, torch_cpu, torch_verdicts = _timed(["fuzz", f"{path}:compute_approx_kl", "--framework",
                                                            "torch", "--dtypes", dtype])
            print(f"{dtype:<9} numpy k3    {numpy_wall:6.1f} s wall {numpy_cpu:6.1f} s CPU  ({numpy_verdicts})")
            print(f"{dtype:<9} torch k3    {torch_wall:6.1f} s wall {torch_cpu:6.1f} s CPU  ({torch_verdicts})")
            print(f"{dtype:<9} torch/numpy {torch_wall / numpy_wall:6.2f} x wall {torch_cpu / numpy_cpu:6.2f} x CPU",
                  flush=True)


if __name__ == "__main__":
    main()
