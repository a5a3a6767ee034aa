"""Time of the exhaustive 16-bit sweep of a torch implementation against its NumPy twin:
verl's low_var_kl in the input dtype (clamp(exp(t) - 1 - t, -10, 10), t clamped to
[-20, 20]), all four floating-point claims, float16 and bfloat16, every pair of [-60, 0].

Run: python benchmarks/bench_torch_sweep.py [--dtypes float16,bfloat16]
(prints the figures; nothing is asserted).  Target (the library-function issue): the torch
sweep within 2x its NumPy twin's time.  A torch implementation is swept in one process
(forking after torch started its thread pools can deadlock), the NumPy one on every core.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verify.core.reproducible import pin_numpy_dispatch  # noqa: E402

pin_numpy_dispatch()  # the numbers `verify all` gives, on any machine

import numpy as np  # noqa: E402

from verify.core.claims import FLOATING  # noqa: E402
from verify.layers.floating import check_callable  # noqa: E402

EXPRESSION = "Min(Max(exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20), -10), 10)"


def low_var_kl_numpy(logp, logq):
    """The NumPy twin, in the input dtype (ml_dtypes' bfloat16 rounds every operation)."""
    log_ratio = np.clip(logp - logq, -20, 20)
    with np.errstate(over="ignore"):
        return np.clip(np.exp(log_ratio) - 1 - log_ratio, -10, 10).astype(np.asarray(logp).dtype)


def low_var_kl_torch(logp, logq):
    import torch

    log_ratio = torch.clamp(logp - logq, -20, 20)
    return torch.clamp(torch.exp(log_ratio) - 1 - log_ratio, -10, 10)


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _sweep(function, dtype, framework):
    start, cpu = time.perf_counter(), _cpu()
    verdicts = check_callable(function, EXPRESSION, dtype, claims=FLOATING, profile="ci", framework=framework)
    summary = ", ".join(f"{claim} {verdict.verdict}" for claim, verdict in verdicts.items())
    return time.perf_counter() - start, _cpu() - cpu, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float16,bfloat16")
    options = parser.parse_args()
    for dtype in options.dtypes.split(","):
        numpy_wall, numpy_cpu, numpy_summary = _sweep(low_var_kl_numpy, dtype, "numpy")
        print(f"numpy {dtype:<9} {numpy_wall:6.1f} s wall, {numpy_cpu:6.1f} s CPU  ({numpy_summary})", flush=True)
    for dtype in options.dtypes.split(","):  # torch last: once loaded, sweeps run in one process
        torch_wall, torch_cpu, torch_summary = _sweep(low_var_kl_torch, dtype, "torch")
        print(f"torch {dtype:<9} {torch_wall:6.1f} s wall, {torch_cpu:6.1f} s CPU  ({torch_summary})", flush=True)


if __name__ == "__main__":
    main()
