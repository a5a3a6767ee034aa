"""NeMo-RL's KL terms (``reference_policy_kl_type``: k1, k2, k3 default): log r clamped
to [-20, 20] first, the result to [-10, 10] (both configurable), in the input dtype.
As a loss (the default) the term is always multiplied by a differentiable weight,
exp(logp - logp.detach()) (1 in value, the score in gradient), detached where the
[-20, 20] clamp bites; NaN or infinite weights are set to 0.  The weight multiplies the
term before the [-10, 10] clamp (as the function's docstring says): where the clamp
bites the token gives no gradient at all, the weight's score included.

Source: nemo_rl/algorithms/utils.py ``calculate_kl`` and loss_functions.py (ClippedPGLossFn).
"""
import numpy as np

from estimators import Estimator, Usage
from estimators import _claims as C
from estimators._library import (add, as_dtype, clamp, clamp_backward, constant, div, exp, mul, neg, ones,
                                 square_backward, sub, where_backward)

_SOURCE = "nemo_rl algorithms/utils.py calculate_kl"
# the weight, detached beyond the input clamp, multiplies the term before the output clamp
_WEIGHT = dict(weight="self_ratio", weight_detached_beyond=20.0, weight_clamp=(-10.0, 10.0))


def _clamped_log_ratio(logp, logq):
    logp, logq = as_dtype(logp, logq)
    return clamp(sub(logp, logq), -20, 20), logq


def _weighted(kl, logq):
    """clamp(exp(logp - logp.detach()) * kl, -10, 10): the weight is 1 in value."""
    weight = exp(sub(logq, logq))
    return clamp(mul(weight, kl), -10, 10)


def k1_numeric(logp, logq):
    log_ratio, logq = _clamped_log_ratio(logp, logq)
    return _weighted(-log_ratio, logq)


def k2_numeric(logp, logq):
    log_ratio, logq = _clamped_log_ratio(logp, logq)
    return _weighted(div(mul(log_ratio, log_ratio), constant(log_ratio, 2)), logq)


def k3_numeric(logp, logq):
    log_ratio, logq = _clamped_log_ratio(logp, logq)
    return _weighted(sub(sub(exp(log_ratio), constant(log_ratio, 1)), log_ratio), logq)


# --- d/dlogq of the torch code, as autograd runs it (logprob = logq requires grad)

def _weighted_grad(logp, logq, kl, kl_backward):
    """clamp(weight * kl, -10, 10) backward, weight = where(|logr| > 20, w.detach(), w),
    w = exp(logprob - logprob.detach()): the weight's path (in the branch not taken, +0
    whatever kl is) plus the path through kl and the [-20, 20] clamp of logr."""
    logp, logq = as_dtype(logp, logq)
    log_ratio = sub(logp, logq)
    weight = exp(sub(logq, logq))
    product = mul(weight, kl)
    grad = clamp_backward(ones(product), product, -10, 10)
    with np.errstate(invalid="ignore"):
        detached = abs(log_ratio) > constant(log_ratio, 20)
    _, grad_weight = where_backward(detached, mul(grad, kl))
    weight_path = mul(grad_weight, weight)
    grad_clamped = kl_backward(mul(grad, weight))
    log_ratio_path = neg(clamp_backward(grad_clamped, log_ratio, -20, 20))
    return add(weight_path, log_ratio_path)


def k1_grad(logp, logq):
    log_ratio, _ = _clamped_log_ratio(logp, logq)
    return _weighted_grad(logp, logq, -log_ratio, neg)


def k2_grad(logp, logq):
    log_ratio, _ = _clamped_log_ratio(logp, logq)
    kl = div(mul(log_ratio, log_ratio), constant(log_ratio, 2))
    return _weighted_grad(logp, logq, kl, lambda grad: square_backward(div(grad, constant(grad, 2)), log_ratio))


def k3_grad(logp, logq):
    """NaN where exp(clamped logr) overflowed (float16, 11.09 < log r <= 20): the output
    clamp gives 0, times inf on both paths."""
    log_ratio, _ = _clamped_log_ratio(logp, logq)
    ratio = exp(log_ratio)
    kl = sub(sub(ratio, constant(log_ratio, 1)), log_ratio)
    return _weighted_grad(logp, logq, kl, lambda grad: add(neg(grad), mul(grad, ratio)))


nemo_rl_k1 = Estimator(
    name="nemo_rl_k1", expr=C.K1_IN_OUT, numeric=k1_numeric, claims=C.PROVED[C.K1_IN_OUT] + C.FP_EXACT_ARITHMETIC,
    numeric_grad=k1_grad,
    backward_expr=C.GRAD_NEMO_K1,
    source=f"{_SOURCE}: k1 -> -logr, logr = clamp(ref - logp, -20, 20), times the weight, clamped to [-10, 10]",
    description="k1 with NeMo-RL's clamps, times exp(logp - logp.detach()).",
    usage=Usage("nemo_rl", "k1", kinds=("loss", "reward"), **_WEIGHT, weighted_expr=C.K1_IN,
                advice="As a loss the weight turns it into REINFORCE with k1: grad KL(q||p) on-policy."),
)

nemo_rl_k2 = Estimator(
    name="nemo_rl_k2", expr=C.K2_IN_OUT, numeric=k2_numeric, claims=C.PROVED[C.K2_IN_OUT] + ("fp_nonnegative",) + C.FP_EXACT_ARITHMETIC,
    numeric_grad=k2_grad,
    backward_expr=C.GRAD_NEMO_K2,
    source=f"{_SOURCE}: k2 -> square(logr) / 2, clamps as k1",
    description="k2 with NeMo-RL's clamps, times exp(logp - logp.detach()).",
    usage=Usage("nemo_rl", "k2", kinds=("loss", "reward"), **_WEIGHT, weighted_expr=C.K2_IN,
                advice="With the weight the gradient is grad E_q[k2], which is not grad KL(q||p)."),
)

nemo_rl_k3 = Estimator(
    name="nemo_rl_k3", expr=C.K3_IN_OUT, numeric=k3_numeric, claims=C.PROVED[C.K3_IN_OUT] + C.FP_FINITE,
    numeric_grad=k3_grad,
    backward_expr=C.GRAD_K3_OUT,
    source=f"{_SOURCE}: k3 -> exp(logr) - 1 - logr, clamps as k1 (the default)",
    description="k3 with NeMo-RL's clamps, times exp(logp - logp.detach()) (1 in value).",
    usage=Usage("nemo_rl", "k3", kinds=("loss", "reward"), default_for=("loss",), **_WEIGHT, weighted_expr=C.K3_IN,
                coefficient="reference_policy_kl_penalty",
                advice="Follows grad KL(q||p) on-policy (while the clamp is idle); biased off-policy "
                       "(the weight is 1 in value, not q_theta/q_old)."),
)
