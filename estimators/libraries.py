"""Estimators that RL training libraries ship.

The implementations follow the scheme of estimators/schulman.py: float64 inside,
the log ratio formed exactly, one correct rounding to the input dtype at the end.
"""
import numpy as np

from estimators import Estimator
from estimators._numerics import log_ratio_parts, round_to
from estimators.schulman import k3_float64

LOG_RATIO_CLAMP = 20.0
K3_CLAMP = 10.0


def abs_numeric(logp, logq):
    """|log p - log q|, formed exactly in float64 and rounded once to the input dtype."""
    hi, lo, dtype = log_ratio_parts(logp, logq)
    return round_to(np.abs(hi + lo), dtype)


def k3_clamped_numeric(logp, logq):
    """verl's low_var_kl: k3 of the log ratio clamped to [-20, 20], clamped to [-10, 10];
    k3 is evaluated without cancellation in float64 and rounded once to the input dtype."""
    hi, lo, dtype = log_ratio_parts(logp, logq)
    clamped = np.clip(hi, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    lo = np.where(clamped == hi, lo, 0.0)
    # hi == +-20 with lo != 0 would step over the clamp: drop lo on the far side
    lo = np.where((hi == LOG_RATIO_CLAMP) & (lo > 0), 0.0, lo)
    lo = np.where((hi == -LOG_RATIO_CLAMP) & (lo < 0), 0.0, lo)
    return round_to(np.clip(k3_float64(clamped, lo), -K3_CLAMP, K3_CLAMP), dtype)


_FP_CLAIMS = ("fp_nonnegative", "fp_finite", "fp_accurate", "fp_matches_expression")

abs = Estimator(  # noqa: A001 - the registry name is "abs"
    name="abs",
    expr="Abs(log(r))",
    numeric=abs_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one",
        "subexponential_growth", "linear_growth_in_log_ratio",
    ) + _FP_CLAIMS,
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
    ) + _FP_CLAIMS,
    source="verl kl_penalty='low_var_kl': log r clamped to [-20, 20], then k3 clamped to [-10, 10]",
    description="k3 with clamps: bounded, but its gradient vanishes where the clamp is active.",
)
