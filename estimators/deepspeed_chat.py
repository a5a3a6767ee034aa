"""DeepSpeed-Chat's KL in the reward: k1, -kl_ctl * (log_probs - ref_log_probs), in the
input dtype (float32 only if configured), no clamp.

Source: DeepSpeedExamples applications/DeepSpeed-Chat dschat/rlhf/ppo_trainer.py ``compute_rewards``.
"""
from estimators import Estimator, Usage
from estimators import _claims as C
from estimators.verl import k1_grad, k1_numeric

deepspeed_chat_k1 = Estimator(
    name="deepspeed_chat_k1", expr=C.K1, numeric=k1_numeric, claims=C.PROVED[C.K1] + C.FP_EXACT_ARITHMETIC,
    numeric_grad=k1_grad,
    source="DeepSpeed-Chat rlhf/ppo_trainer.py compute_rewards: -kl_ctl * (log_probs - ref_log_probs)",
    description="k1 in the reward, in the input dtype.",
    usage=Usage("deepspeed_chat", "k1", kinds=("reward",), default_for=("reward",), coefficient="kl_ctl 0.1",
                advice="In the reward it follows grad KL(q||p)."),
)
