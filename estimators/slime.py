"""slime's KL terms (``kl_loss_type``: k1 default, k2, k3, low_var_kl), in float32;
low_var_kl alone is clamped to [-10, 10], AFTER the optional importance weight
(``use_unbiased_kl``: exp(logp - old_logp), not detached, multiplied before the clamp).

Source: slime/utils/ppo_utils.py ``compute_approx_kl``.
"""
import numpy as np

from estimators import Estimator, Usage
from estimators import _claims as C
from estimators._library import (add, as_dtype, cast_backward, clamp, clamp_backward, constant, exp, mul, neg,
                                 ones, sub)
from estimators._numerics import input_dtype

_SOURCE = "slime utils/ppo_utils.py compute_approx_kl"


def _k3(logp, logq):
    """t = -(logq - logp) in float32; (exp(t) - 1) - t."""
    logp, logq = as_dtype(logp, logq, np.float32)
    log_ratio = -sub(logq, logp)
    return sub(sub(exp(log_ratio), constant(log_ratio, 1)), log_ratio)


def k1_numeric(logp, logq):
    """log_probs.float() - log_probs_base.float() = log q - log p, in float32, no clamp."""
    logp, logq = as_dtype(logp, logq, np.float32)
    return sub(logq, logp)


def k3_numeric(logp, logq):
    return _k3(logp, logq)


def low_var_kl_numeric(logp, logq):
    return clamp(_k3(logp, logq), -10, 10)


# use_unbiased_kl on-policy: importance_ratio = exp(logp - old_logp) = exp(0) = 1 exactly,
# and 1 * x == x in IEEE arithmetic (NaN, inf and -0 included), so the values of the
# weighted terms are those of k3 and low_var_kl: the same functions, computed once by
# the floating-point layer.  The weight matters for the gradient (Usage.weight).
k3_is_numeric = k3_numeric
low_var_kl_is_numeric = low_var_kl_numeric


# --- d/dlogq of the torch code, as autograd runs it: in float32, cast back to logq's dtype

def k1_grad(logp, logq):
    """.float() backward of the upstream 1."""
    return cast_backward(ones(as_dtype(logp, logq, np.float32)[1]), input_dtype(logp, logq))


def _k3_backward(logp, logq, grad):
    """t = -(logq - logp); (exp(t) - 1) - t with upstream ``grad`` (float32): -grad and
    grad * exp(t) meet at t, then neg; the float32 gradient of the cast logprob."""
    logp, logq = as_dtype(logp, logq, np.float32)
    log_ratio = -sub(logq, logp)
    return neg(add(neg(grad), mul(grad, exp(log_ratio))))


def k3_grad(logp, logq):
    """1 - e^t in float32, cast back: -inf in float16 where it passes -65504 (log r > 11.09)."""
    upstream = ones(as_dtype(logp, logq, np.float32)[1])
    return cast_backward(_k3_backward(logp, logq, upstream), input_dtype(logp, logq))


def low_var_kl_grad(logp, logq):
    k3 = _k3(logp, logq)
    upstream = clamp_backward(ones(k3), k3, -10, 10)
    return cast_backward(_k3_backward(logp, logq, upstream), input_dtype(logp, logq))


def _weighted_grad(logp, logq, clamped):
    """exp(logprob.float() - old.float()) * k3 (clamped or not) on-policy: the weight's
    path (its own cast of logprob) and k3's, each cast back, summed in logq's dtype:
    k3 + (1 - e^t), exactly -t, but in float16 inf - inf = NaN where both casts overflow."""
    dtype = input_dtype(logp, logq)
    k3 = _k3(logp, logq)
    log_weight = sub(*as_dtype(logq, logq, np.float32))
    weight = exp(log_weight)
    product = mul(weight, k3)
    upstream = clamp_backward(ones(product), product, -10, 10) if clamped else ones(product)
    weight_path = mul(mul(upstream, k3), weight)
    k3_path = _k3_backward(logp, logq, mul(upstream, weight))
    return add(cast_backward(weight_path, dtype), cast_backward(k3_path, dtype))


def k3_is_grad(logp, logq):
    return _weighted_grad(logp, logq, clamped=False)


def low_var_kl_is_grad(logp, logq):
    return _weighted_grad(logp, logq, clamped=True)


slime_k1 = Estimator(
    name="slime_k1", expr=C.K1, numeric=k1_numeric, claims=C.PROVED[C.K1] + C.FP_FLOAT32_CAST,
    numeric_grad=k1_grad,
    source=f"{_SOURCE}: k1 -> log_probs.float() - log_probs_base.float()",
    description="k1 in float32, no clamp: slime's default kl_loss_type.",
    usage=Usage("slime", "k1", kinds=("loss", "reward"), default_for=("loss",), computes_in="float32",
                advice="As a loss its expected gradient is zero on-policy (it regularises nothing); "
                       "in the reward it follows grad KL(q||p)."),
)

slime_k3 = Estimator(
    name="slime_k3", expr=C.K3, numeric=k3_numeric, claims=C.PROVED[C.K3] + C.FP_FINITE,
    numeric_grad=k3_grad,
    source=f"{_SOURCE}: k3 -> exp(t) - 1 - t in float32, no clamp",
    description="k3 in float32 without any clamp.",
    usage=Usage("slime", "k3", kinds=("loss", "reward"), computes_in="float32",
                advice="As a loss it follows grad KL(p||q) (the forward KL), not KL(q||p)."),
)

slime_low_var_kl = Estimator(
    name="slime_low_var_kl", expr=C.K3_OUT, numeric=low_var_kl_numeric, claims=C.PROVED[C.K3_OUT] + C.FP_FINITE,
    numeric_grad=low_var_kl_grad,
    source=f"{_SOURCE}: low_var_kl -> clamp(exp(t) - 1 - t, -10, 10) in float32",
    description="k3 clamped to [-10, 10], in float32."
                " (f(r) is written with a [-20, 20] clamp on log r, which never changes its value: k3 > 10 there.)",
    usage=Usage("slime", "low_var_kl", kinds=("loss", "reward"), computes_in="float32",
                advice="As a loss it follows grad KL(p||q) near p = q and loses the clamped tokens far away."),
)

slime_k3_is = Estimator(
    name="slime_k3_is", expr=C.K3, numeric=k3_is_numeric, claims=C.PROVED[C.K3] + C.FP_FINITE,
    numeric_grad=k3_is_grad,
    backward_expr=C.GRAD_K2,
    source=f"{_SOURCE}: use_unbiased_kl -> exp(logp - old_logp) * k3, not detached",
    description="k3 times the importance weight q_theta/q_old, differentiable; in float32.",
    usage=Usage("slime", "k3 + use_unbiased_kl", kinds=("loss",), weight="ratio", computes_in="float32",
                advice="Follows grad KL(q||p) on- and off-policy."),
)

slime_low_var_kl_is = Estimator(
    name="slime_low_var_kl_is", expr=C.K3_OUT, numeric=low_var_kl_is_numeric, claims=C.PROVED[C.K3_OUT] + C.FP_FINITE,
    numeric_grad=low_var_kl_is_grad,
    backward_expr=C.GRAD_K3_OUT,
    source=f"{_SOURCE}: use_unbiased_kl with low_var_kl -> clamp(exp(logp - old_logp) * k3, -10, 10)",
    description="The weight multiplies k3 before the clamp: where w k3 > 10 the token gives no gradient."
                " (f(r) is written with a [-20, 20] clamp on log r, which never changes its value: k3 > 10 there.)",
    usage=Usage("slime", "low_var_kl + use_unbiased_kl", kinds=("loss",), weight="ratio", computes_in="float32",
                weight_clamp=(-10.0, 10.0), weighted_expr=C.K3,
                advice="Follows grad KL(q||p) near p = q; biased once w k3 > 10 on some tokens."),
)
