"""OpenRLHF's KL terms (``kl_estimator``: k1 default, k2, k3): both log-probs are cast
to float32 first, and the result is clamped to [-10, 10] for every estimator (k1
included); there is no clamp before exp.  Used in the reward, or as a loss when
configured (``use_kl_loss``), without an importance weight.

Source: openrlhf/models/utils.py ``compute_approx_kl``.
"""
import numpy as np

from estimators import Estimator, Usage
from estimators import _claims as C
from estimators._library import (add, as_dtype, cast_backward, clamp, clamp_backward, constant, div, exp, mul, neg,
                                 ones, square_backward, sub)
from estimators._numerics import input_dtype

_SOURCE = "openrlhf models/utils.py compute_approx_kl"


def _log_ratio(logp, logq):
    """log_probs.float() - log_probs_base.float() = log q - log p, in float32."""
    logp, logq = as_dtype(logp, logq, np.float32)
    return sub(logq, logp)


def k1_numeric(logp, logq):
    """clamp(logq - logp, -10, 10) in float32."""
    return clamp(_log_ratio(logp, logq), -10, 10)


def k2_numeric(logp, logq):
    """clamp((logq - logp)**2 / 2, -10, 10) in float32."""
    log_ratio = _log_ratio(logp, logq)
    return clamp(div(mul(log_ratio, log_ratio), constant(log_ratio, 2)), -10, 10)


def k3_numeric(logp, logq):
    """t = -(logq - logp); clamp((exp(t) - 1) - t, -10, 10) in float32."""
    log_ratio = -_log_ratio(logp, logq)
    return clamp(sub(sub(exp(log_ratio), constant(log_ratio, 1)), log_ratio), -10, 10)


# --- d/dlogq of the torch code, as autograd runs it: in float32, cast back to logq's dtype

def k1_grad(logp, logq):
    """clamp backward, then .float() backward."""
    log_ratio = _log_ratio(logp, logq)
    return cast_backward(clamp_backward(ones(log_ratio), log_ratio, -10, 10), input_dtype(logp, logq))


def k2_grad(logp, logq):
    """clamp, / 2.0 and ** 2 backward, then .float() backward."""
    log_ratio = _log_ratio(logp, logq)
    half_square = div(mul(log_ratio, log_ratio), constant(log_ratio, 2))
    grad = div(clamp_backward(ones(half_square), half_square, -10, 10), constant(log_ratio, 2))
    return cast_backward(square_backward(grad, log_ratio), input_dtype(logp, logq))


def k3_grad(logp, logq):
    """t = -log_ratio; clamp((exp(t) - 1) - t) backward: -grad and grad * exp(t) meet at
    t, then neg and .float() backward (float32: exp(t) is finite for t < 88.7)."""
    log_ratio = -_log_ratio(logp, logq)
    ratio = exp(log_ratio)
    k3 = sub(sub(ratio, constant(log_ratio, 1)), log_ratio)
    grad = clamp_backward(ones(k3), k3, -10, 10)
    grad_t = add(neg(grad), mul(grad, ratio))
    return cast_backward(neg(grad_t), input_dtype(logp, logq))


openrlhf_k1 = Estimator(
    name="openrlhf_k1", expr=C.K1_OUT, numeric=k1_numeric, claims=C.PROVED[C.K1_OUT] + C.FP_FLOAT32_CAST,
    numeric_grad=k1_grad,
    source=f"{_SOURCE}: k1 -> log_ratio.clamp(-10, 10), log_ratio = log_probs.float() - log_probs_base.float()",
    description="k1 clamped to [-10, 10], in float32: the clamp makes it biased once |log r| > 10.",
    usage=Usage("openrlhf", "k1", kinds=("reward", "loss"), default_for=("reward",), computes_in="float32",
                coefficient="init_kl_coef 0.01",
                advice="In the reward it follows grad KL(q||p); as a loss (use_kl_loss) its expected gradient is zero."),
)

openrlhf_k2 = Estimator(
    name="openrlhf_k2", expr=C.K2_OUT, numeric=k2_numeric, claims=C.PROVED[C.K2_OUT] + ("fp_nonnegative",) + C.FP_FLOAT32_CAST,
    numeric_grad=k2_grad,
    source=f"{_SOURCE}: k2 -> (log_ratio**2 / 2).clamp(-10, 10)",
    description="k2 clamped to [-10, 10], in float32.",
    usage=Usage("openrlhf", "k2", kinds=("reward", "loss"), computes_in="float32",
                advice="As an on-policy loss it follows grad KL(q||p) until |log r| > sqrt(20)."),
)

openrlhf_k3 = Estimator(
    name="openrlhf_k3", expr=C.K3_OUT, numeric=k3_numeric, claims=C.PROVED[C.K3_OUT] + C.FP_FINITE,
    numeric_grad=k3_grad,
    source=f"{_SOURCE}: k3 -> (exp(t) - 1 - t).clamp(-10, 10), t = -log_ratio, no clamp before exp",
    description="k3 clamped to [-10, 10], in float32."
                " (f(r) is written with a [-20, 20] clamp on log r, which never changes its value: k3 > 10 there.)",
    usage=Usage("openrlhf", "k3", kinds=("reward", "loss"), computes_in="float32",
                advice="As a loss it follows grad KL(p||q) near p = q; in the reward it is biased."),
)
