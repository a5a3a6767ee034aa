"""verl's KL terms (``kl_penalty`` for the reward, ``kl_loss_type`` for the loss):
"kl" (k1), "abs", "mse" (k2), "low_var_kl" (k3 with clamps), and the "+" suffix
(value of the base term, gradient of k2).  verl does the arithmetic in the dtype of the
log-probs it is given (no cast), and its KL loss uses the current log-probs with no
importance weight, also over several epochs on the same samples.

Source: verl/trainer/ppo/core_algos.py, ``kl_penalty`` / ``kl_penalty_forward``.
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators._library import (abs_backward, add, as_dtype, clamp, clamp_backward, constant, exp, mul, neg,
                                 ones, square_backward, sub)

_SOURCE = "verl trainer/ppo/core_algos.py kl_penalty"


def k1_numeric(logp, logq):
    """kl = logprob - ref_logprob, in the input dtype."""
    logp, logq = as_dtype(logp, logq)
    return sub(logq, logp)


def abs_numeric(logp, logq):
    """(logprob - ref_logprob).abs(), in the input dtype."""
    logp, logq = as_dtype(logp, logq)
    return abs(sub(logq, logp))


def k2_numeric(logp, logq):
    """0.5 * (logprob - ref_logprob).square(), in the input dtype."""
    logp, logq = as_dtype(logp, logq)
    difference = sub(logq, logp)
    return mul(constant(difference, 0.5), mul(difference, difference))


def low_var_kl_numeric(logp, logq):
    """kl = clamp(ref - logprob, -20, 20); clamp(exp(kl) - kl - 1, -10, 10), in the input dtype."""
    logp, logq = as_dtype(logp, logq)
    kl = clamp(sub(logp, logq), -20, 20)
    ratio = exp(kl)
    return clamp(sub(sub(ratio, kl), constant(kl, 1)), -10, 10)


def low_var_kl_plus_numeric(logp, logq):
    """k2 - k2.detach() + low_var_kl.detach(): in value 0 + low_var_kl."""
    k2 = k2_numeric(logp, logq)
    return add(sub(k2, k2), low_var_kl_numeric(logp, logq))


# --- d/dlogq of the torch code, as autograd runs it (logprob = logq requires grad)

def k1_grad(logp, logq):
    """(logprob - ref): the upstream 1."""
    logp, logq = as_dtype(logp, logq)
    return ones(logq)


def abs_grad(logp, logq):
    """abs backward: 1 * sgn(logprob - ref), 0 where logp == logq."""
    logp, logq = as_dtype(logp, logq)
    return abs_backward(ones(logq), sub(logq, logp))


def k2_grad(logp, logq):
    """0.5 * d.square(): (1 * 0.5) * (2 * d), d = logprob - ref."""
    logp, logq = as_dtype(logp, logq)
    difference = sub(logq, logp)
    return square_backward(mul(ones(logq), constant(logq, 0.5)), difference)


def low_var_kl_grad(logp, logq):
    """clamp(exp(kl) - kl - 1) backward: where the exp overflowed (float16, log r > 11.09)
    and the output clamp zeroes the gradient, 0 * inf = NaN, passed on by the input clamp
    while log r <= 20."""
    logp, logq = as_dtype(logp, logq)
    log_ratio = sub(logp, logq)
    kl = clamp(log_ratio, -20, 20)
    ratio = exp(kl)
    kld = sub(sub(ratio, kl), constant(kl, 1))
    grad = clamp_backward(ones(kld), kld, -10, 10)          # also through "- 1"
    grad_kl = add(neg(grad), mul(grad, ratio))              # "- kl", then exp backward
    return neg(clamp_backward(grad_kl, log_ratio, -20, 20))  # ref - logprob


def low_var_kl_plus_grad(logp, logq):
    """k2 - k2.detach() + low_var_kl.detach(): the gradient of k2."""
    return k2_grad(logp, logq)


verl_k1 = Estimator(
    name="verl_k1", expr=C.K1, numeric=k1_numeric, claims=C.PROVED[C.K1] + C.FP_EXACT_ARITHMETIC,
    numeric_grad=k1_grad,
    source=f"{_SOURCE}: 'kl' -> logprob - ref_logprob",
    description="k1 in the input dtype; the default of verl's KL-in-reward (adaptive coefficient).",
    usage=Usage("verl", "kl (k1)", kinds=("reward", "loss"), default_for=("reward",),
                coefficient="algorithm.kl_ctrl.kl_coef 0.001 (fixed or adaptive)",
                advice="As a reward it follows grad KL(q||p); as a loss its expected gradient is zero."),
)

verl_abs = Estimator(
    name="verl_abs", expr=C.ABS, numeric=abs_numeric, claims=C.PROVED[C.ABS] + ("fp_nonnegative",) + C.FP_EXACT_ARITHMETIC,
    numeric_grad=abs_grad,
    source=f"{_SOURCE}: 'abs' -> (logprob - ref_logprob).abs()",
    description="|log r| in the input dtype: not locally unbiased (E|log r| is of order sqrt(KL)).",
    usage=Usage("verl", "abs", kinds=("reward", "loss"),
                advice="Estimates neither KL near p = q; its gradient follows neither."),
)

verl_k2 = Estimator(
    name="verl_k2", expr=C.K2, numeric=k2_numeric, claims=C.PROVED[C.K2] + ("fp_nonnegative",) + C.FP_EXACT_ARITHMETIC,
    numeric_grad=k2_grad,
    source=f"{_SOURCE}: 'mse' / 'k2' -> 0.5 * (logprob - ref_logprob).square()",
    description="k2 in the input dtype: as an on-policy loss its gradient is grad KL(q||p).",
    usage=Usage("verl", "mse (k2)", kinds=("loss", "reward"),
                advice="The loss to use on-policy (grad KL(q||p)); off-policy (several epochs) it is biased."),
)

verl_low_var_kl = Estimator(
    name="verl_low_var_kl", expr=C.K3_IN_OUT, numeric=low_var_kl_numeric, claims=C.PROVED[C.K3_IN_OUT] + C.FP_FINITE,
    numeric_grad=low_var_kl_grad,
    source=f"{_SOURCE}: 'low_var_kl' / 'k3' -> clamp(exp(kl) - kl - 1, -10, 10), kl = clamp(ref - logprob, -20, 20)",
    description="k3 with verl's clamps, computed in the input dtype (cancellation near r = 1 in bf16).",
    usage=Usage("verl", "low_var_kl (k3)", kinds=("loss", "reward"), default_for=("loss",),
                coefficient="actor.kl_loss_coef 0.001 (use_kl_loss off by default)",
                advice="As a loss it follows grad KL(p||q) (the forward KL) near p = q, not KL(q||p); "
                       "in bf16 it is negative or zero near r = 1."),
)

verl_low_var_kl_plus = Estimator(
    name="verl_low_var_kl_plus", expr=C.K3_IN_OUT, numeric=low_var_kl_plus_numeric,
    claims=C.PROVED[C.K3_IN_OUT] + C.FP_FINITE,
    numeric_grad=low_var_kl_plus_grad,
    backward_expr=C.GRAD_K2,
    source=f"{_SOURCE}: 'low_var_kl+' -> k2 - k2.detach() + low_var_kl.detach() (straight-through)",
    description="The value of low_var_kl with the gradient of k2 (raised NotImplementedError before a later fix).",
    usage=Usage("verl", "low_var_kl+", kinds=("loss",), straight_through=True,
                advice="Reports the k3 value and follows grad KL(q||p) on-policy (k2's gradient)."),
)
