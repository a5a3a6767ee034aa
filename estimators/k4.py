"""K4 = log((r - 1)^2 + 1), proposed in seed 000_35babbbff54373df.txt (Zhang, 2025).

The seed claims lower bias, lower variance, non-negativity and no spikes; it measured
bias against KL(p||q) although its samples come from q.  Only what holds is declared.
"""
import numpy as np

from estimators import Estimator


def k4_numeric(logp, logq):
    log_ratio = np.subtract(logp, logq)
    return np.log1p(np.square(np.expm1(log_ratio)))


k4 = Estimator(
    name="k4",
    expr="log((r - 1)**2 + 1)",
    numeric=k4_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one",
        "subexponential_growth", "linear_growth_in_log_ratio",
    ),
    source="Zhang 2025, 'Yet another new KL estimator' (seed 000_35babbbff54373df.txt), eq. (1)",
    description="Non-negative and grows like 2|log r|, but f''(1) = 2: about twice KL near p = q.",
)
