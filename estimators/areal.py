"""AReaL's KL in the reward (k1 default, k2, k3), clamped to [-10, 10], in float32.

Source: areal/utils/functional.py (KL reward of the PPO actor).
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators.openrlhf import k1_grad, k1_numeric

areal_k1 = Estimator(
    name="areal_k1", expr=C.K1_OUT, numeric=k1_numeric, claims=C.PROVED[C.K1_OUT] + C.FP_FLOAT32_CAST,
    numeric_grad=k1_grad,
    source="areal utils/functional.py: k1 KL reward, clamped to [-10, 10], float32",
    description="k1 clamped to [-10, 10] in float32, in the reward only.",
    usage=Usage("areal", "k1", kinds=("reward",), default_for=("reward",), computes_in="float32",
                advice="In the reward it follows grad KL(q||p) while |log r| < 10."),
)
