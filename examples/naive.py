"""Naive implementations, as written in the wild, to show what the fp claims catch.

Not part of the registry.  Use them as a TARGET:

    python -m verify fuzz examples/naive.py:k4_blog
    python -m verify check examples/naive.py:k3_exp --claims fp_nonnegative@float32

Both compute in the input dtype, exactly as written, and declare the floating-point
claims their formulas suggest; the harness refutes them.
"""
import numpy as np

from estimators import Estimator


def k4_blog_numeric(logp, logq):
    """Seed 000_35babbbff54373df.txt, eq. (1), as in its code: through p(x) and q(x)."""
    px = np.exp(logp)
    qx = np.exp(logq)
    return np.log(px ** 2 - 2 * px * qx + 2 * qx ** 2) - 2 * logq


def k3_exp_numeric(logp, logq):
    """k3 as (exp(t) - 1) - t, the form of Schulman's post and most training code."""
    log_ratio = logp - logq
    return np.exp(log_ratio) - 1 - log_ratio


_FP_CLAIMS = ("fp_nonnegative", "fp_finite", "fp_accurate", "fp_matches_expression")

k4_blog = Estimator(
    name="k4_blog",
    expr="log((r - 1)**2 + 1)",
    numeric=k4_blog_numeric,
    claims=("nonnegative",) + _FP_CLAIMS,
    source="Zhang 2025 (seed 000_35babbbff54373df.txt): k4 = log(px**2 - 2*px*qx + 2*qx**2) - 2*log q",
    description="K4 computed through p and q: underflows for small probabilities, negative near p = q.",
)

k3_exp = Estimator(
    name="k3_exp",
    expr="(r - 1) - log(r)",
    numeric=k3_exp_numeric,
    claims=("nonnegative",) + _FP_CLAIMS,
    source="Schulman 2020 as commonly coded: (logr.exp() - 1) - logr",
    description="k3 without expm1: cancels to garbage, or below zero, near r = 1.",
)
