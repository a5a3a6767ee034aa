"""NeMo-Aligner's KL in the reward: the absolute value of k1 by default (or k1).

Source: nemo_aligner/utils/ppo_utils.py ``calculate_kl_penalty`` (use_absolute_kl=True).
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators.verl import abs_grad, abs_numeric

nemo_aligner_abs = Estimator(
    name="nemo_aligner_abs", expr=C.ABS, numeric=abs_numeric, claims=C.PROVED[C.ABS] + ("fp_nonnegative",) + C.FP_EXACT_ARITHMETIC,
    numeric_grad=abs_grad,
    source="nemo_aligner utils/ppo_utils.py calculate_kl_penalty: use_absolute_kl -> |log p - log q|",
    description="|log r| in the reward (the default), in the input dtype.",
    usage=Usage("nemo_aligner", "use_absolute_kl", kinds=("reward",), default_for=("reward",),
                advice="In the reward its gradient follows neither KL; E|log r| is of order sqrt(KL)."),
)
