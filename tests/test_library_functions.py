"""The library's own function, run as written, agrees with its catalog entry row by row.

``LIBRARIES`` below re-implements each library's KL function in our own code, from the
behaviour shared/LIBRARIES.md states (names, options, casts, clamps, weights), in the
shape the libraries call it: (batch, sequence) tensors, options as keyword arguments, a
class for AReaL.  It is written to a file and checked as a user would check the real
one, ``verify gradients FILE.py:FUNC --framework torch --option ...``, with nothing but
options: the parameters are bound by their names.  Each catalog entry (NumPy, mode as
data, exact sums) and its library function (torch autograd) must give the same
``gradient_of`` in every mode on every pair, and cosines within 1e-3.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from verify.cli import main

if os.environ.get("CI"):
    import torch  # noqa: F401 - under CI a missing torch must fail, not skip
else:
    torch = pytest.importorskip("torch")

LIBRARIES = '''
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
'''

# catalog entry -> (function, options); the mode of the term follows the entry's kinds
CASES = {
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
COSINE_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def library_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("libraries") / "libraries_kl.py"
    path.write_text(LIBRARIES)
    return path


def _run(capsys, arguments):
    code = main(arguments)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _options(options):
    return [flag for option in options for flag in ("--option", option)]


@pytest.mark.parametrize("entry", sorted(CASES))
def test_catalog_entry_agrees_with_its_library_function(entry, library_file, capsys):
    function, options = CASES[entry]
    catalog = {(row["mode"], row["regime"]): row for row in _run(capsys, ["gradients", entry, "--json"])["results"]
               if row["family"] == "softmax"}
    usages = {"reward"} if {mode for mode, _ in catalog} == {"reward"} else {"loss", "reward"}
    compared = 0
    for usage in sorted(usages):
        document = _run(capsys, ["gradients", f"{library_file}:{function}", "--framework", "torch", "--usage", usage,
                                 *_options(options), "--json"])
        for row in document["results"]:
            key = (row["mode"], row["regime"])
            if key not in catalog:
                continue
            ours = catalog[key]
            assert row["gradient_of"] == ours["gradient_of"], (entry, key, row, ours)
            for cosine in ("cosine_kl_qp", "cosine_kl_pq"):
                if ours[cosine] is None or row[cosine] is None:
                    assert ours[cosine] is None and row[cosine] is None, (entry, key, cosine)
                else:
                    assert abs(row[cosine] - ours[cosine]) <= COSINE_TOLERANCE, (entry, key, cosine, row, ours)
            compared += 1
    assert compared == len(catalog), (entry, compared, sorted(catalog))


def test_roll_full_as_a_full_vocabulary_term(library_file, capsys):
    """ROLL's "full": one value per position over the vocabulary: exactly grad KL(q||p)."""
    document = _run(capsys, ["gradients", f"{library_file}:roll_full_kl", "--framework", "torch", "--kind", "full",
                             "--json"])
    assert {(row["regime"], row["gradient_of"]) for row in document["results"]} == {("near", "kl_qp"),
                                                                                   ("far", "kl_qp")}
    catalog = _run(capsys, ["gradients", "roll_full", "--json"])["results"]
    assert {row["gradient_of"] for row in catalog if row["family"] == "softmax"} == {"kl_qp"}


def test_slime_float32_inside_a_float64_output_is_detected(library_file, capsys):
    """slime computes in float32 and returns float64 (its weight's dtype): the bound is
    float32's, and the note says so, instead of a false 'biased' next to cosine 1."""
    document = _run(capsys, ["gradients", f"{library_file}:slime_compute_approx_kl", "--framework", "torch",
                             "--option", "kl_loss_type=k3", "--option", "use_unbiased_kl=True", "--json"])
    rows = [row for row in document["results"] if row["mode"] == "loss"]
    assert {row["gradient_of"] for row in rows} == {"kl_qp"}
    assert all("detected precision: float32 inside its float64 output" in row["note"] for row in rows)


def test_a_sequence_level_weight_mixes_positions(library_file, capsys):
    """TRL's sequence-level weight reduces over the sequence axis: reported as mixing
    positions; on the built-in pairs (sequences of length 1) it is the token weight."""
    document = _run(capsys, ["gradients", f"{library_file}:grpo_per_token_kl", "--framework", "torch",
                             "--option", "use_bias_correction_kl=True", "--option",
                             "importance_sampling_level=sequence", "--json"])
    assert document["mixes"] == ["positions"]
    assert any("mixes positions" in note for note in document["notes"])
    assert {row["gradient_of"] for row in document["results"] if row["mode"] == "loss"} == {"kl_qp"}
    token = _run(capsys, ["gradients", f"{library_file}:grpo_per_token_kl", "--framework", "torch",
                          "--option", "use_bias_correction_kl=True", "--json"])
    assert token["mixes"] == []


def test_a_batch_normalisation_is_reported(tmp_path, capsys):
    path = tmp_path / "batch.py"
    path.write_text("def centred(logprob, ref_logprob):\n"
                    "    d = logprob - ref_logprob\n"
                    "    return d - d.mean(0, keepdim=True)\n")
    document = _run(capsys, ["gradients", f"{path}:centred", "--framework", "torch", "--json"])
    assert document["mixes"] == ["batch rows"]


def test_a_class_is_instantiated_with_its_options(library_file, capsys):
    document = _run(capsys, ["gradients", f"{library_file}:KLEstimator", "--framework", "torch", "--usage",
                             "reward", "--option", "kl_estimator=k3", "--option", "apply_clamp=False", "--json"])
    assert {row["gradient_of"] for row in document["results"]} == {"biased"}  # k3 in the reward
    default = _run(capsys, ["gradients", f"{library_file}:KLEstimator", "--framework", "torch", "--usage", "reward",
                            "--json"])
    assert {row["gradient_of"] for row in default["results"]} == {"kl_qp"}  # k1 in the reward


def test_a_class_refusing_its_options_is_one_line(tmp_path, capsys):
    path = tmp_path / "strict.py"
    path.write_text("class Strict:\n"
                    "    def __init__(self, kind):\n"
                    "        if kind != 'k1':\n"
                    "            raise ValueError('unknown kind')\n"
                    "    def __call__(self, logprob, ref_logprob):\n"
                    "        return logprob - ref_logprob\n")
    assert main(["gradients", f"{path}:Strict", "--framework", "torch"]) == 2
    err = capsys.readouterr().err
    assert "__init__ parameter 'kind' has no default" in err and len(err.strip().splitlines()) == 1
    assert main(["gradients", f"{path}:Strict", "--framework", "torch", "--option", "kind=k2"]) == 2
    err = capsys.readouterr().err
    assert "Strict(kind='k2') raised ValueError: unknown kind" in err and len(err.strip().splitlines()) == 1


def test_forgetting_the_torch_framework_says_so(library_file, capsys):
    assert main(["gradients", f"{library_file}:kl_penalty"]) == 2
    err = capsys.readouterr().err
    assert "is a function, not an Estimator" in err and "--framework torch" in err


def test_catalog_entry_on_a_given_pair(capsys):
    """A catalog entry on the user's own logits: the exact sums, no torch needed; the
    clamp of verl's low_var_kl bites on the far token (log r = 24 > 20)."""
    code = main(["gradients", "verl_low_var_kl", "--q", "categorical(logits=[0, 0, 0, -24])",
                 "--p", "categorical(logits=[0, 0, 0, 0])", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {row["regime"] for row in out["results"]} == {"given"}
    assert out["notes"] == ["no old policy given: loss_offpolicy not computed"]
    loss = next(row for row in out["results"] if row["mode"] == "loss")
    assert loss["gradient_of"] != "kl_pq"
    near = json.loads(_json_of(capsys, ["gradients", "verl_low_var_kl", "--q", "categorical(logits=[0, 0.1, 0, 0])",
                                        "--p", "categorical(logits=[0, 0, 0, 0])", "--json"]))
    assert next(row for row in near["results"] if row["mode"] == "loss")["gradient_of"] == "kl_pq"


def _json_of(capsys, arguments):
    assert main(arguments) == 0
    return capsys.readouterr().out


def test_given_logits_for_a_catalog_entry_per_position(tmp_path, capsys):
    rng = np.random.default_rng(20261207)
    path = tmp_path / "logits.npz"
    policy = rng.normal(size=(2, 5))
    np.savez(path, policy=policy, reference=policy + 0.2 * rng.normal(size=(2, 5)),
             old=policy + 0.05 * rng.normal(size=(2, 5)))
    out = json.loads(_json_of(capsys, ["gradients", "k2", "--logits", str(path), "--mode", "loss,loss_offpolicy",
                                       "--json"]))
    assert [(row["mode"], row["regime"], row["gradient_of"]) for row in out["results"]] == [
        ("loss", "given[0]", "kl_qp"), ("loss", "given[1]", "kl_qp"),
        ("loss_offpolicy", "given[0]", "biased"), ("loss_offpolicy", "given[1]", "biased")]
