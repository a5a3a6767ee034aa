"""Estimators that RL training libraries ship."""
import numpy as np

from estimators import Estimator


def abs_numeric(logp, logq):
    return np.abs(np.subtract(logp, logq))


def k3_clamped_numeric(logp, logq):
    log_ratio = np.clip(np.subtract(logp, logq), -20, 20)
    return np.clip(np.expm1(log_ratio) - log_ratio, -10, 10)


abs = Estimator(  # noqa: A001 - the registry name is "abs"
    name="abs",
    expr="Abs(log(r))",
    numeric=abs_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one",
        "subexponential_growth", "linear_growth_in_log_ratio",
    ),
    source="TRL and verl kl_penalty='abs': |log p - log q|",
    description="Non-negative and bounded by |log r|, but not differentiable at r = 1, so not locally unbiased.",
)

k3_clamped = Estimator(
    name="k3_clamped",
    expr="Min(Max(exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20), -10), 10)",
    numeric=k3_clamped_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one",
        "subexponential_growth", "linear_growth_in_log_ratio", "locally_unbiased",
    ),
    source="verl kl_penalty='low_var_kl': log r clamped to [-20, 20], then k3 clamped to [-10, 10]",
    description="k3 with clamps: bounded, but its gradient vanishes where the clamp is active.",
)
