"""Schulman's estimators (J. Schulman, "Approximating KL Divergence", 2020).

Conventions of shared/CLAIMS.md: x ~ q, r = p/q, log_ratio = log p - log q.
"""
import numpy as np

from estimators import Estimator


def _log_ratio(logp, logq):
    return np.subtract(logp, logq)


def k1_numeric(logp, logq):
    return -_log_ratio(logp, logq)


def k2_numeric(logp, logq):
    log_ratio = _log_ratio(logp, logq)
    return log_ratio * log_ratio / 2


def k3_numeric(logp, logq):
    log_ratio = _log_ratio(logp, logq)
    return np.expm1(log_ratio) - log_ratio


def kl_pq_numeric(logp, logq):
    log_ratio = _log_ratio(logp, logq)
    return np.exp(log_ratio) * log_ratio - np.expm1(log_ratio)


k1 = Estimator(
    name="k1",
    expr="-log(r)",
    numeric=k1_numeric,
    claims=(
        "zero_at_one", "convex", "subexponential_growth", "linear_growth_in_log_ratio",
        "unbiased_kl_qp", "locally_unbiased", "loss_grad_zero", "reward_grad_kl_qp",
    ),
    source="Schulman 2020, 'Approximating KL Divergence': the naive estimator -log r",
    description="Unbiased for KL(q||p) but negative for r > 1; as a loss its expected gradient is zero.",
)

k2 = Estimator(
    name="k2",
    expr="log(r)**2 / 2",
    numeric=k2_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one", "subexponential_growth",
        "locally_unbiased", "loss_grad_kl_qp",
    ),
    source="Schulman 2020, 'Approximating KL Divergence': k2 = (log r)^2 / 2",
    description="Biased but non-negative; as a loss its expected gradient is grad KL(q||p).",
)

k3 = Estimator(
    name="k3",
    expr="(r - 1) - log(r)",
    numeric=k3_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one", "convex",
        "unbiased_kl_qp", "locally_unbiased", "loss_grad_kl_pq",
    ),
    source="Schulman 2020, 'Approximating KL Divergence': k3 = (r - 1) - log r",
    description="Unbiased for KL(q||p) and non-negative, but grows like r; as a loss it gives grad KL(p||q).",
)

kl_pq = Estimator(
    name="kl_pq",
    expr="r*log(r) - (r - 1)",
    numeric=kl_pq_numeric,
    claims=(
        "zero_at_one", "nonnegative", "unique_minimum_at_one", "convex",
        "unbiased_kl_pq", "locally_unbiased",
    ),
    source="Schulman 2020, 'Approximating KL Divergence': r log r - (r - 1) estimates KL(p||q) from q-samples",
    description="Unbiased for the forward KL(p||q) from samples of q.",
)
