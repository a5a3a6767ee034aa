"""Schulman's estimators (J. Schulman, "Approximating KL Divergence", 2020).

Conventions of docs/claims.md: x ~ q, r = p/q, log_ratio = log p - log q.

The numeric implementations are written to keep, in float64, float32, float16 and
bfloat16, the properties the formulas have (non-negative, finite, accurate to a few
ulps).  They all follow one scheme: the input arrays are widened to float64, the log
ratio is formed there as an unevaluated sum ``hi + lo`` (``hi + lo`` equals
``logp - logq`` exactly, by Knuth's TwoSum), f is evaluated in float64 by a formula
free of cancellation, and the result is rounded once, correctly, to the input dtype.
For float32 and the 16-bit dtypes this upcasting makes the result the float64 value
rounded to the dtype (within 0.5 ulp plus a float64 rounding error); for float64 it is
a careful float64 evaluation (a few ulps).
"""
import numpy as np

from estimators import Estimator
from estimators._numerics import log_ratio_parts, round_to

# Taylor series switch: |log_ratio| <= SERIES_LIMIT uses the series, beyond it the
# closed form no longer cancels by more than a factor of about 3.
SERIES_LIMIT = 1.0
# n = 2 .. 19: the omitted terms are below 2 (n - 1) |t|^(n - 2) / n! < 2^-55 of the leading
# t^2/2 (n = 20, k3's and kl_pq's series alike): a fraction of a float64 ulp
_SERIES_TERMS = 18


def _series(log_ratio, coefficients):
    """sum_k coefficients[k] * t**(k + 2) by Horner's rule."""
    total = np.full_like(log_ratio, coefficients[-1])
    for c in coefficients[-2::-1]:
        total = total * log_ratio + c
    return total * log_ratio * log_ratio


def _factorial_coefficients(weight):
    import math
    return [weight(n) / math.factorial(n) for n in range(2, _SERIES_TERMS + 2)]


# k3(t) = e^t - 1 - t = sum_{n>=2} t^n / n!;  kl_pq(t) = t e^t - (e^t - 1) = sum (n - 1) t^n / n!
_K3_SERIES = _factorial_coefficients(lambda n: 1)
_KL_PQ_SERIES = _factorial_coefficients(lambda n: n - 1)


def k3_float64(hi, lo):
    """e^t - 1 - t at t = hi + lo, without cancellation."""
    small = np.abs(hi) <= SERIES_LIMIT
    with np.errstate(over="ignore", invalid="ignore"):
        expm1 = np.expm1(hi)
        out = np.array((expm1 - hi) + lo * expm1, dtype=np.float64)  # 0-d inputs give a scalar
        out[small] = _series(hi[small], _K3_SERIES) + lo[small] * expm1[small]
    return out


def kl_pq_float64(hi, lo):
    """t e^t - (e^t - 1) = e^t (t - 1) + 1 at t = hi + lo, without cancellation."""
    small = np.abs(hi) <= SERIES_LIMIT
    with np.errstate(over="ignore", invalid="ignore"):
        exp = np.exp(hi)
        # d/dt [e^t (t - 1) + 1] = t e^t
        correction = lo * hi * exp
        out = np.array(exp * (hi - 1.0) + 1.0 + correction, dtype=np.float64)
        out[small] = _series(hi[small], _KL_PQ_SERIES) + correction[small]
    return out


def k1_numeric(logp, logq):
    """-log r, formed exactly in float64 and rounded once to the input dtype."""
    hi, lo, dtype = log_ratio_parts(logp, logq)
    return round_to(-(hi + lo), dtype)


def k2_numeric(logp, logq):
    """(log r)^2 / 2, in float64 (hi^2/2 + hi lo), rounded once to the input dtype."""
    hi, lo, dtype = log_ratio_parts(logp, logq)
    return round_to(hi * hi / 2 + hi * lo, dtype)


def k3_numeric(logp, logq):
    """(r - 1) - log r: a Taylor series for |log r| <= 1, expm1(t) - t beyond; float64
    inside, rounded once to the input dtype."""
    hi, lo, dtype = log_ratio_parts(logp, logq)
    return round_to(k3_float64(hi, lo), dtype)


def kl_pq_numeric(logp, logq):
    """r log r - (r - 1): a Taylor series for |log r| <= 1, e^t (t - 1) + 1 beyond;
    float64 inside, rounded once to the input dtype."""
    hi, lo, dtype = log_ratio_parts(logp, logq)
    return round_to(kl_pq_float64(hi, lo), dtype)


_FP_CLAIMS = ("fp_finite", "fp_accurate", "fp_matches_expression")

k1 = Estimator(
    name="k1",
    expr="-log(r)",
    numeric=k1_numeric,
    claims=(
        "zero_at_one", "convex", "subexponential_growth", "linear_growth_in_log_ratio",
        "unbiased_kl_qp", "locally_unbiased", "loss_grad_zero", "reward_grad_kl_qp",
    ) + _FP_CLAIMS,
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
    ) + ("fp_nonnegative",) + _FP_CLAIMS,
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
    ) + ("fp_nonnegative",) + _FP_CLAIMS,
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
    ) + ("fp_nonnegative",) + _FP_CLAIMS,
    source="Schulman 2020, 'Approximating KL Divergence': r log r - (r - 1) estimates KL(p||q) from q-samples",
    description="Unbiased for the forward KL(p||q) from samples of q.",
)
