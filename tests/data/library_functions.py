"""Our own re-implementations of RL libraries' KL functions, written from the behaviour
shared/LIBRARIES.md states (names, options, casts, clamps, weights), in the shape the
libraries call them: (batch, sequence) tensors, options as keyword arguments, a class for
AReaL.  Not copies of any library's code.  Used by tests/test_library_functions.py (as a
user would check the real ones) and scripts/make_torch_counts.py (counts with torch's
arithmetic)."""
import torch


def kl_penalty(logprob, ref_logprob, kl_penalty):
    """verl: k1 "kl", "abs", k2 "mse", k3 "low_var_kl" (t clamped to [-20, 20] before exp,
    the result to [-10, 10]); a "+" suffix: the value of the base, the gradient of k2."""
    if kl_penalty.endswith("+"):
        base = kl_penalty[:-1]
        value = kl_penalty_forward(logprob, ref_logprob, base)
        k2 = kl_penalty_forward(logprob, ref_logprob, "mse")
        return k2 - k2.detach() + value.detach()
    return kl_penalty_forward(logprob, ref_logprob, kl_penalty)


def kl_penalty_forward(logprob, ref_logprob, kl_penalty):
    if kl_penalty in ("kl", "k1"):
        return logprob - ref_logprob
    if kl_penalty == "abs":
        return (logprob - ref_logprob).abs()
    if kl_penalty in ("mse", "k2"):
        return 0.5 * (logprob - ref_logprob).square()
    if kl_penalty in ("low_var_kl", "k3"):
        kl = torch.clamp(ref_logprob - logprob, min=-20, max=20)
        return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)
    raise NotImplementedError(kl_penalty)


def compute_approx_kl(log_probs, log_probs_base, kl_estimator="k1"):
    """OpenRLHF: both log-probs cast to float32 first; every result clamped to [-10, 10]."""
    log_ratio = log_probs.float() - log_probs_base.float()
    if kl_estimator == "k2":
        log_ratio = log_ratio ** 2 / 2.0
    elif kl_estimator == "k3":
        log_ratio = -log_ratio
        log_ratio = log_ratio.exp() - 1 - log_ratio
    return log_ratio.clamp(min=-10, max=10)


def skyrl_compute_approx_kl(log_probs, log_probs_base, loss_mask=None, kl_estimator_type="k3"):
    """SkyRL: a mask third, options after; k3 as verl's low_var_kl."""
    if kl_estimator_type == "k1":
        kl = log_probs - log_probs_base
    elif kl_estimator_type == "k3":
        log_ratio = torch.clamp(log_probs_base - log_probs, min=-20, max=20)
        kl = torch.clamp(log_ratio.exp() - log_ratio - 1, min=-10, max=10)
    else:
        raise ValueError(kl_estimator_type)
    if loss_mask is not None:
        kl = kl * loss_mask
    return kl


def roll_compute_approx_kl(log_probs, log_probs_base, action_mask=None, kl_penalty="k3"):
    """ROLL: float32; k3's result clamped to [-10, 10], no clamp before exp."""
    log_ratio = log_probs.float() - log_probs_base.float()
    if kl_penalty == "k3":
        log_ratio = -log_ratio
        kl = torch.clamp(log_ratio.exp() - 1 - log_ratio, min=-10, max=10)
    elif kl_penalty == "kl":
        kl = log_ratio
    else:
        raise ValueError(kl_penalty)
    return kl if action_mask is None else kl * action_mask


def roll_full_kl(logits, ref_logits):
    """ROLL "full": the exact KL(q||p) of each position over the vocabulary, in float32."""
    logq = torch.log_softmax(logits.float(), dim=-1)
    logp = torch.log_softmax(ref_logits.float(), dim=-1)
    return (logq.exp() * (logq - logp)).sum(-1)


def calculate_kl_loss(logprobs, logprobs_reference, kl_type="k3", input_clamp_value=20.0,
                      output_clamp_value=10.0):
    """NeMo-RL: log r clamped first, the term times exp(logp - logp.detach()) (detached
    where the input clamp bites), then the output clamp, in the input dtype."""
    log_ratio = logprobs_reference - logprobs
    clamped = log_ratio.clamp(min=-input_clamp_value, max=input_clamp_value)
    if kl_type == "k1":
        kl = -clamped
    elif kl_type == "k2":
        kl = clamped.square() / 2
    else:
        kl = clamped.exp() - 1 - clamped
    weight = torch.exp(logprobs - logprobs.detach())
    weight = torch.where(log_ratio.abs() > input_clamp_value, weight.detach(), weight)
    weight = torch.nan_to_num(weight, nan=0.0, posinf=0.0, neginf=0.0)
    return (weight * kl).clamp(min=-output_clamp_value, max=output_clamp_value)


def slime_compute_approx_kl(log_probs, ref_log_probs, kl_loss_type="k1", old_log_probs=None,
                            use_unbiased_kl=False):
    """slime: float32 inside; the weight exp(logp - old) (not detached) multiplies before
    low_var_kl's clamp; the output is float64 for float64 inputs (the weight's dtype)."""
    log_ratio = log_probs.float() - ref_log_probs.float()
    if kl_loss_type == "k1":
        kl = log_ratio
    elif kl_loss_type == "k2":
        kl = log_ratio ** 2 / 2.0
    else:
        kl = (-log_ratio).exp() - 1 + log_ratio
    if use_unbiased_kl:
        kl = torch.exp(log_probs - old_log_probs) * kl
    else:
        kl = kl.to(log_probs.dtype)
    if kl_loss_type == "low_var_kl":
        kl = torch.clamp(kl, min=-10, max=10)
    return kl


def grpo_per_token_kl(per_token_logps, ref_per_token_logps, old_per_token_logps,
                      use_bias_correction_kl=False, importance_sampling_level="token"):
    """TRL GRPO: k3, optionally times exp(logp - old) (not detached), per token or per
    sequence (the mean over the sequence axis of the log ratios, broadcast)."""
    per_token_kl = (torch.exp(ref_per_token_logps - per_token_logps)
                    - (ref_per_token_logps - per_token_logps) - 1)
    if use_bias_correction_kl:
        log_ratio = per_token_logps - old_per_token_logps
        if importance_sampling_level == "sequence":
            log_ratio = log_ratio.mean(-1, keepdim=True)
        per_token_kl = per_token_kl * torch.exp(log_ratio)
    return per_token_kl


def ppo_kl(logprobs, ref_logprobs, kl_estimator="k1"):
    """TRL PPO: the reward's KL, k1 or k3."""
    logr = ref_logprobs - logprobs
    return -logr if kl_estimator == "k1" else (logr.exp() - 1) - logr


class KLEstimator:
    """AReaL: k1 (default), k2, k3 in float32, clamped to [-10, 10]."""

    def __init__(self, kl_estimator="k1", apply_clamp=True):
        self.kl_estimator = kl_estimator
        self.apply_clamp = apply_clamp

    def __call__(self, log_probs, log_probs_base):
        log_ratio = log_probs.float() - log_probs_base.float()
        if self.kl_estimator == "k3":
            log_ratio = (-log_ratio).exp() - 1 + log_ratio
        return log_ratio.clamp(-10, 10) if self.apply_clamp else log_ratio


# catalog entry -> (this module's function, its options as the user passes them with
# --option); the usage (loss or reward) follows the entry's kinds
CATALOG = {
    "verl_k1": ("kl_penalty", ["kl_penalty=kl"]),
    "verl_abs": ("kl_penalty", ["kl_penalty=abs"]),
    "verl_k2": ("kl_penalty", ["kl_penalty=mse"]),
    "verl_low_var_kl": ("kl_penalty", ["kl_penalty=low_var_kl"]),
    "verl_low_var_kl_plus": ("kl_penalty", ["kl_penalty=low_var_kl+"]),
    "openrlhf_k1": ("compute_approx_kl", []),
    "openrlhf_k2": ("compute_approx_kl", ["kl_estimator=k2"]),
    "openrlhf_k3": ("compute_approx_kl", ["kl_estimator=k3"]),
    "skyrl_k3": ("skyrl_compute_approx_kl", []),
    "roll_k3": ("roll_compute_approx_kl", []),
    "nemo_rl_k1": ("calculate_kl_loss", ["kl_type=k1"]),
    "nemo_rl_k2": ("calculate_kl_loss", ["kl_type=k2"]),
    "nemo_rl_k3": ("calculate_kl_loss", []),
    "slime_k1": ("slime_compute_approx_kl", []),
    "slime_k3": ("slime_compute_approx_kl", ["kl_loss_type=k3"]),
    "slime_low_var_kl": ("slime_compute_approx_kl", ["kl_loss_type=low_var_kl"]),
    "slime_k3_is": ("slime_compute_approx_kl", ["kl_loss_type=k3", "use_unbiased_kl=True"]),
    "slime_low_var_kl_is": ("slime_compute_approx_kl", ["kl_loss_type=low_var_kl", "use_unbiased_kl=True"]),
    "trl_grpo_k3": ("grpo_per_token_kl", []),
    "trl_grpo_k3_is": ("grpo_per_token_kl", ["use_bias_correction_kl=True"]),
    "trl_grpo_k3_is_sequence": ("grpo_per_token_kl", ["use_bias_correction_kl=True",
                                                      "importance_sampling_level=sequence"]),
    "trl_ppo_k1": ("ppo_kl", []),
    "trl_ppo_k3": ("ppo_kl", ["kl_estimator=k3"]),
    "areal_k1": ("KLEstimator", []),
}
