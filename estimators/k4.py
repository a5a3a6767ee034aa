"""K4 = log((r - 1)^2 + 1), proposed in seed 000_35babbbff54373df.txt (Zhang, 2025).

The seed claims lower bias, lower variance, non-negativity and no spikes; it measured
bias against KL(p||q) although its samples come from q.  Only what holds is declared.
The seed computes K4 through p(x) and q(x) themselves (examples/naive.py keeps that
form); the implementation here never forms p or q.
"""
import numpy as np

from estimators import Estimator
from estimators._numerics import log_ratio_parts, round_to


def k4_numeric(logp, logq):
    """log1p(expm1(t)^2) in float64 at t = logp - logq (plus the first-order term of
    the TwoSum remainder), rounded once to the input dtype."""
    hi, lo, dtype = log_ratio_parts(logp, logq)
    expm1 = np.expm1(hi)
    square = expm1 * expm1
    # d/dt log(1 + (e^t - 1)^2) = 2 e^t (e^t - 1) / (1 + (e^t - 1)^2)
    slope = 2 * (expm1 + 1) * expm1 / (1 + square)
    return round_to(np.log1p(square) + lo * slope, dtype)


k4 = Estimator(
    name="k4",
    expr="log((r - 1)**2 + 1)",
    numeric=k4_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one",
        "subexponential_growth", "linear_growth_in_log_ratio",
        "fp_nonnegative", "fp_finite", "fp_accurate", "fp_matches_expression",
    ),
    source="Zhang 2025, 'Yet another new KL estimator' (seed 000_35babbbff54373df.txt), eq. (1)",
    description="Non-negative and grows like 2|log r|, but f''(1) = 2: about twice KL near p = q.",
)
