"""NeMo-RL's KL terms (``reference_policy_kl_type``: k1, k2, k3 default): log r clamped
to [-20, 20] first, the result to [-10, 10] (both configurable), in the input dtype.
As a loss (the default) the term is always multiplied by a differentiable weight,
exp(logp - logp.detach()) (1 in value, the score in gradient), detached where the
[-20, 20] clamp bites; NaN or infinite weights are set to 0.  The weight multiplies the
term before the [-10, 10] clamp (as the function's docstring says): where the clamp
bites the token gives no gradient at all, the weight's score included.

Source: nemo_rl/algorithms/utils.py ``calculate_kl`` and loss_functions.py (ClippedPGLossFn).
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators._library import as_dtype, clamp, constant, div, exp, mul, sub

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


nemo_rl_k1 = Estimator(
    name="nemo_rl_k1", expr=C.K1_IN_OUT, numeric=k1_numeric, claims=C.PROVED[C.K1_IN_OUT] + C.FP_EXACT_ARITHMETIC,
    source=f"{_SOURCE}: k1 -> -logr, logr = clamp(ref - logp, -20, 20), times the weight, clamped to [-10, 10]",
    description="k1 with NeMo-RL's clamps, times exp(logp - logp.detach()).",
    usage=Usage("nemo_rl", "k1", kinds=("loss", "reward"), **_WEIGHT, weighted_expr=C.K1_IN,
                advice="As a loss the weight turns it into REINFORCE with k1: grad KL(q||p) on-policy."),
)

nemo_rl_k2 = Estimator(
    name="nemo_rl_k2", expr=C.K2_IN_OUT, numeric=k2_numeric, claims=C.PROVED[C.K2_IN_OUT] + ("fp_nonnegative",) + C.FP_EXACT_ARITHMETIC,
    source=f"{_SOURCE}: k2 -> square(logr) / 2, clamps as k1",
    description="k2 with NeMo-RL's clamps, times exp(logp - logp.detach()).",
    usage=Usage("nemo_rl", "k2", kinds=("loss", "reward"), **_WEIGHT, weighted_expr=C.K2_IN,
                advice="With the weight the gradient is grad E_q[k2], which is not grad KL(q||p)."),
)

nemo_rl_k3 = Estimator(
    name="nemo_rl_k3", expr=C.K3_IN_OUT, numeric=k3_numeric, claims=C.PROVED[C.K3_IN_OUT] + C.FP_FINITE,
    source=f"{_SOURCE}: k3 -> exp(logr) - 1 - logr, clamps as k1 (the default)",
    description="k3 with NeMo-RL's clamps, times exp(logp - logp.detach()) (1 in value).",
    usage=Usage("nemo_rl", "k3", kinds=("loss", "reward"), default_for=("loss",), **_WEIGHT, weighted_expr=C.K3_IN,
                coefficient="reference_policy_kl_penalty",
                advice="Follows grad KL(q||p) on-policy (while the clamp is idle); biased off-policy "
                       "(the weight is 1 in value, not q_theta/q_old)."),
)
