"""SkyRL's KL terms (k1, abs, k2, k3 default): k3 with verl's clamps ([-20, 20] on log r,
[-10, 10] on the result), in the input dtype; a loss by default (coefficient 0.001).

Source: skyrl_train/utils/ppo_utils.py ``compute_approx_kl``.
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators.verl import low_var_kl_grad, low_var_kl_numeric

skyrl_k3 = Estimator(
    name="skyrl_k3", expr=C.K3_IN_OUT, numeric=low_var_kl_numeric, claims=C.PROVED[C.K3_IN_OUT] + C.FP_FINITE,
    numeric_grad=low_var_kl_grad,
    source="skyrl_train utils/ppo_utils.py compute_approx_kl: k3 as verl's low_var_kl",
    description="verl's low_var_kl, in the input dtype: SkyRL's default KL loss.",
    usage=Usage("skyrl", "k3", kinds=("loss", "reward"), default_for=("loss",), coefficient="kl_loss_coef 0.001",
                advice="As a loss it follows grad KL(p||q) near p = q, not KL(q||p)."),
)
