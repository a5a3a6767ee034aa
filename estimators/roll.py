"""ROLL's KL terms: the KL loss is fixed to k3 (result clamped to [-10, 10], no clamp
before exp), computed in float32 (the logits are cast); the reward KL is configurable
("kl", "abs", "mse", "k3", "full").  "full" is the exact per-position KL over the
vocabulary, not a function of one sample's ratio.

Source: roll/utils/functionals.py ``compute_approx_kl``.
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators.openrlhf import k3_grad, k3_numeric

roll_k3 = Estimator(
    name="roll_k3", expr=C.K3_OUT, numeric=k3_numeric, claims=C.PROVED[C.K3_OUT] + C.FP_FINITE,
    numeric_grad=k3_grad,
    source="roll utils/functionals.py compute_approx_kl: k3 -> clamp(exp(t) - 1 - t, -10, 10) in float32",
    description="k3 clamped to [-10, 10], in float32: ROLL's KL loss."
                " (f(r) is written with a [-20, 20] clamp on log r, which never changes its value: k3 > 10 there.)",
    usage=Usage("roll", "k3 (KL loss)", kinds=("loss", "reward"), default_for=("loss",), computes_in="float32",
                advice="As a loss it follows grad KL(p||q) near p = q, not KL(q||p)."),
)

roll_full = Estimator(
    name="roll_full", expr=None,
    source="roll utils/functionals.py compute_approx_kl: 'full' -> sum over the vocabulary of q (log q - log p)",
    description="The exact KL(q||p) of each position, summed over the vocabulary (needs the full logits).",
    usage=Usage("roll", "full", kinds=("loss",), full_vocabulary=True, computes_in="float32",
                advice="Its gradient is exactly grad KL(q||p) at each position: no estimator, no variance."),
)
