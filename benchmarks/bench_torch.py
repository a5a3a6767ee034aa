"""Time of a gradient check of a user's torch KL term on a 152,064-token vocabulary
(Qwen2's), through verify.layers.gradients.autograd: loss and loss_offpolicy, one position, and 4 positions.

Run: python benchmarks/bench_torch.py   (prints the figures; nothing is asserted)

Each check evaluates the term and its autograd twice (float64, and float32 for the
cancellation bound) per mode, plus the closed-form references.  The logits are random
(seeded): policy ~ N(0, 2^2), reference = policy + N(0, 0.5^2), old = policy + N(0, 0.1^2).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from verify.layers.gradients.autograd import gradient_of_term  # noqa: E402

VOCABULARY = 152_064
REPEATS = 5


def k3_clamped(logp, ref_logp, old_logp):
    """verl's low_var_kl as shipped."""
    log_ratio = torch.clamp(ref_logp - logp, -20, 20)
    return torch.clamp(torch.exp(log_ratio) - 1 - log_ratio, -10, 10)


def _logits(positions, seed=0):
    rng = np.random.default_rng(seed)
    policy = rng.normal(0.0, 2.0, size=(positions, VOCABULARY))
    return {"policy": policy, "reference": policy + rng.normal(0.0, 0.5, size=policy.shape),
            "old": policy + rng.normal(0.0, 0.1, size=policy.shape)}


def _time(positions, usage):
    given = _logits(positions)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        report = gradient_of_term(k3_clamped, usage=usage, **given)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), report


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; vocabulary {VOCABULARY:,}; "
          f"median (min) of {REPEATS}")
    for positions in (1, 4):
        for usage in ("loss", "reward"):
            median, best, report = _time(positions, usage)
            verdicts = sorted({(r.mode, r.gradient_of) for r in report.results})
            print(f"  T = {positions}, usage {usage:<6}: {median:6.3f} s ({best:.3f} s), "
                  f"{len(report.results)} rows; {verdicts}")


if __name__ == "__main__":
    main()
