"""TRL's KL terms: GRPO's k3 loss (optionally importance-weighted, per token or per
sequence) and PPO's KL in the reward (k1 or k3).  No casts: the arithmetic is in the
dtype of the log-probs (bf16 under bf16 training).

Sources: trl/trainer/grpo_trainer.py (``per_token_kl``, ``use_bias_correction_kl``,
``importance_sampling_level``) and trl/trainer/ppo_trainer.py (``kl_estimator``).
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators._library import add, as_dtype, constant, div, exp, mul, neg, ones, sub


def grpo_k3_numeric(logp, logq):
    """exp(ref - logp) - (ref - logp) - 1, in the input dtype."""
    logp, logq = as_dtype(logp, logq)
    log_ratio = sub(logp, logq)
    return sub(sub(exp(log_ratio), log_ratio), constant(log_ratio, 1))


# use_bias_correction_kl on-policy: per_token_kl * exp(logp - old_logp) with old_logp =
# logp is per_token_kl * 1 == per_token_kl exactly (IEEE), so the value is GRPO's k3:
# the same function, computed once by the floating-point layer.  The weight matters for
# the gradient (Usage.weight).
grpo_k3_is_numeric = grpo_k3_numeric


def ppo_k1_numeric(logp, logq):
    """logr = ref - logp; -logr, in the input dtype."""
    logp, logq = as_dtype(logp, logq)
    return -sub(logp, logq)


def ppo_k3_numeric(logp, logq):
    """logr = ref - logp; (logr.exp() - 1) - logr, in the input dtype."""
    logp, logq = as_dtype(logp, logq)
    log_ratio = sub(logp, logq)
    return sub(sub(exp(log_ratio), constant(log_ratio, 1)), log_ratio)


# --- d/dlogq of the torch code, as autograd runs it (logprob = logq requires grad)

def _grpo_k3_paths(logp, logq, grad):
    """exp(ref - logprob) - (ref - logprob) - 1 with upstream ``grad``: what reaches
    logprob through the second ref - logprob (+grad), and through the exp (-grad e^t),
    in the order autograd delivers them (it runs the newest ready node first)."""
    ratio = exp(sub(logp, logq))
    return neg(neg(grad)), neg(mul(grad, ratio))


def grpo_k3_grad(logp, logq):
    """1 - exp(t), rounded once; -inf where exp(t) overflows."""
    logp, logq = as_dtype(logp, logq)
    return add(*_grpo_k3_paths(logp, logq, ones(logq)))


def _weighted_paths(logp, logq):
    """per_token_kl * exp(logp - old) on-policy: the weight's path (k3 * 1 * 1), and
    the k3 paths with upstream 1 * weight."""
    logp, logq = as_dtype(logp, logq)
    weight = exp(sub(logq, logq))
    weight_path = mul(mul(ones(logq), grpo_k3_numeric(logp, logq)), weight)
    return weight_path, _grpo_k3_paths(logp, logq, mul(ones(logq), weight))


def grpo_k3_is_grad(logp, logq):
    """Three contributions reach logprob, summed in the order they arrive (it matters in
    16-bit): the weight's nodes are newer than k3's and run first, so (k3 + 1) - e^t;
    exactly -t, but NaN where e^t overflows (inf - inf: float16, log r > 11.09)."""
    weight_path, (one, minus_ratio) = _weighted_paths(logp, logq)
    return add(add(weight_path, one), minus_ratio)


def grpo_k3_is_sequence_grad(logp, logq):
    """The log-weight (and its mean over the sequence: / 1 in backward) is formed before
    k3, so its path arrives last: (1 - e^t) + k3."""
    weight_path, (one, minus_ratio) = _weighted_paths(logp, logq)
    return add(add(one, minus_ratio), div(weight_path, constant(weight_path, 1)))


def ppo_k1_grad(logp, logq):
    """-(ref - logprob): neg backward twice."""
    logp, logq = as_dtype(logp, logq)
    return neg(neg(ones(logq)))


def ppo_k3_grad(logp, logq):
    """(logr.exp() - 1) - logr: -1 and exp(logr) meet at logr, then ref - logprob."""
    logp, logq = as_dtype(logp, logq)
    log_ratio = sub(logp, logq)
    grad = ones(logq)
    return neg(add(neg(grad), mul(grad, exp(log_ratio))))


_GRPO = "trl trainer/grpo_trainer.py _compute_loss"
_IS_ADVICE = ("Follows grad KL(q||p) on- and off-policy near p = q (the weight makes it the gradient "
              "of E_q[k3] = KL(q||p)).")

trl_grpo_k3 = Estimator(
    name="trl_grpo_k3", expr=C.K3, numeric=grpo_k3_numeric, claims=C.PROVED[C.K3] + C.FP_FINITE_BUT_FLOAT16,
    numeric_grad=grpo_k3_grad,
    source=f"{_GRPO}: per_token_kl = exp(ref - logp) - (ref - logp) - 1",
    description="k3, no clamp, in the input dtype; GRPO's only KL option (beta = 0 by default: off).",
    usage=Usage("trl", "GRPO beta > 0", kinds=("loss",), default_for=("loss",), coefficient="beta 0.0 (off)",
                advice="As a loss it follows grad KL(p||q) (the forward KL), not KL(q||p); off-policy biased."),
)

trl_grpo_k3_is = Estimator(
    name="trl_grpo_k3_is", expr=C.K3, numeric=grpo_k3_is_numeric, claims=C.PROVED[C.K3] + C.FP_FINITE_BUT_FLOAT16,
    numeric_grad=grpo_k3_is_grad,
    backward_expr=C.GRAD_K2,
    source=f"{_GRPO}: use_bias_correction_kl -> per_token_kl * exp(logp - old_logp), not detached",
    description="k3 times the token's importance weight q_theta/q_old, differentiable.",
    usage=Usage("trl", "use_bias_correction_kl (token)", kinds=("loss",), weight="ratio",
                coefficient="beta 0.0 (off)", advice=_IS_ADVICE),
)

trl_grpo_k3_is_sequence = Estimator(
    name="trl_grpo_k3_is_sequence", expr=C.K3, numeric=grpo_k3_is_numeric, claims=C.PROVED[C.K3] + C.FP_FINITE_BUT_FLOAT16,
    numeric_grad=grpo_k3_is_sequence_grad,
    backward_expr=C.GRAD_K2,
    source=f"{_GRPO}: use_bias_correction_kl with importance_sampling_level='sequence'",
    description="k3 times exp(mean over the sequence of log(q_theta/q_old)), broadcast onto every token.",
    usage=Usage("trl", "use_bias_correction_kl (sequence)", kinds=("loss",), weight="ratio",
                sequence_level=True, coefficient="beta 0.0 (off)",
                advice="One token: as the token-level weight. Over a sequence it adds the spurious term "
                       "(sum_t k3_t) grad(mean_t log q_t) (see the sequence analysis)."),
)

trl_ppo_k1 = Estimator(
    name="trl_ppo_k1", expr=C.K1, numeric=ppo_k1_numeric, claims=C.PROVED[C.K1] + C.FP_EXACT_ARITHMETIC,
    numeric_grad=ppo_k1_grad,
    source="trl trainer/ppo_trainer.py: kl_estimator='k1' -> -logr, logr = ref - logp",
    description="k1 in the reward (PPO's default; RLOO sums it over the sequence).",
    usage=Usage("trl", "PPO kl_estimator k1", kinds=("reward",), default_for=("reward",), coefficient="kl_coef 0.05",
                advice="In the reward it follows grad KL(q||p)."),
)

trl_ppo_k3 = Estimator(
    name="trl_ppo_k3", expr=C.K3, numeric=ppo_k3_numeric, claims=C.PROVED[C.K3] + C.FP_FINITE_BUT_FLOAT16,
    numeric_grad=ppo_k3_grad,
    source="trl trainer/ppo_trainer.py: kl_estimator='k3' -> (logr.exp() - 1) - logr",
    description="k3 in the reward, in the input dtype.",
    usage=Usage("trl", "PPO kl_estimator k3", kinds=("reward",), coefficient="kl_coef 0.05",
                advice="In the reward its gradient is biased (k3's reward gradient is not grad KL(q||p))."),
)
