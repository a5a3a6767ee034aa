"""Torch twins of every catalog entry: each library's KL term written in torch as the
library writes it (``logprob`` = log q, the policy; ``ref`` = log p; ``old`` = log q_old).

- Values: the NumPy implementation of the registry equals its twin bit for bit wherever
  every operation is correctly rounded in both (+, -, *, /, clamps, and exp/log of
  16-bit tensors, which torch computes in float32 and rounds); where an exp runs in
  float32 or float64 the two libms differ by up to 2 ulps, so the values agree within
  EXP_ULPS ulps of the exp.  Inputs: every 16-bit value of [-60, 0] against 0 on both
  sides (every log ratio the library can form from a 16-bit subtraction with 0), and a
  dense deterministic set of pairs in [-60, 0].
- Backward passes: each entry's ``numeric_grad`` (the NumPy emulation of autograd through
  the library's code, d/dlogq) equals the twin's autograd gradient of the policy
  log-prob, on the same inputs plus pairs beyond [-60, 0] (log-probs of -89, -1e4, -inf:
  exp overflowing in every dtype, masked tokens): bit for bit, signs of zeros and NaN
  positions included, where every exp runs in a 16-bit dtype or there is none; where an
  exp runs in float32/float64, NaN and inf positions exactly and the finite values within
  EXP_ULPS ulps of the exp's magnitude (plus one ulp of the gradient's dtype when it is
  narrower: the float32 gradient is cast back).
- Gradients: the expected gradient of each library mode, by torch autograd in float64 on
  the softmax pairs of verify.layers.gradients (the outcomes enumerated), equals the harness's
  exact result within its error bound (plus float64 rounding of the oracle).

Without torch the module is skipped, except under CI=true, where a missing torch fails.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from estimators import registry
from verify.layers import gradients

if os.environ.get("CI"):
    import torch  # noqa: F401 - under CI a missing torch must fail, not skip
else:
    torch = pytest.importorskip("torch")

import ml_dtypes  # noqa: E402

REGISTRY = registry()
CATALOG = sorted(name for name, e in REGISTRY.items() if e.usage is not None)
# float32/float64 exp: torch (SLEEF) and NumPy differ by up to 2 ulps (measured on 2e6
# points in [-60, 60]); 4 ulps of the exp's magnitude bound the difference of the results
EXP_ULPS = 4.0
# the autograd oracle sums a few float64 terms of size <= 25: its rounding is far below this
ORACLE_ATOL = 1e-13


def FLOAT32(tensor):
    """.float(), as the libraries write it (the gradient oracle passes the identity instead)."""
    return tensor.float()


def _on_policy(logprob):
    return logprob.detach()


# --- the twins, written like the libraries (torch names: logprob = log q, ref = log p)

def verl_k1(logprob, ref, old, cast=None):
    return logprob - ref


def verl_abs(logprob, ref, old, cast=None):
    return (logprob - ref).abs()


def verl_k2(logprob, ref, old, cast=None):
    return 0.5 * (logprob - ref).square()


def verl_low_var_kl(logprob, ref, old, cast=None):
    kl = ref - logprob
    kl = torch.clamp(kl, min=-20, max=20)
    ratio = torch.exp(kl)
    kld = ratio - kl - 1
    return torch.clamp(kld, min=-10, max=10)


def verl_low_var_kl_plus(logprob, ref, old, cast=None):
    k2 = verl_k2(logprob, ref, old)
    return k2 - k2.detach() + verl_low_var_kl(logprob, ref, old).detach()


def trl_grpo_k3(logprob, ref, old, cast=None):
    return torch.exp(ref - logprob) - (ref - logprob) - 1


def trl_grpo_k3_is(logprob, ref, old, cast=None):
    return trl_grpo_k3(logprob, ref, old) * torch.exp(logprob - old)


def trl_grpo_k3_is_sequence(logprob, ref, old, cast=None):
    # one token per sequence here: the mean over the sequence is over a trailing axis of 1
    log_weight = (logprob - old).unsqueeze(-1).mean(-1)
    return trl_grpo_k3(logprob, ref, old) * torch.exp(log_weight)


def trl_ppo_k1(logprob, ref, old, cast=None):
    logr = ref - logprob
    return -logr


def trl_ppo_k3(logprob, ref, old, cast=None):
    logr = ref - logprob
    return (logr.exp() - 1) - logr


def _openrlhf(kind):
    def twin(logprob, ref, old, cast=None):
        cast_ = cast or FLOAT32
        log_ratio = cast_(logprob) - cast_(ref)
        if kind == "k2":
            log_ratio = log_ratio**2 / 2.0
        elif kind == "k3":
            log_ratio = -log_ratio
            log_ratio = log_ratio.exp() - 1 - log_ratio
        return log_ratio.clamp(min=-10, max=10)
    return twin


def _slime(kind, weighted):
    def twin(logprob, ref, old, cast=None):
        cast_ = cast or FLOAT32
        log_ratio = cast_(logprob) - cast_(ref)
        if kind == "k1":
            return log_ratio
        log_ratio = -log_ratio
        log_ratio = log_ratio.exp() - 1 - log_ratio
        if weighted:
            log_ratio = torch.exp(cast_(logprob) - cast_(old)) * log_ratio
        if kind == "low_var_kl":
            log_ratio = torch.clamp(log_ratio, min=-10, max=10)
        return log_ratio
    return twin


def _nemo_rl(kind):
    def twin(logprob, ref, old, cast=None):
        logr = ref - logprob
        clamped = logr.clamp(min=-20, max=20)
        if kind == "k1":
            kl = -clamped
        elif kind == "k2":
            kl = torch.square(clamped) / 2
        else:
            kl = torch.exp(clamped) - 1 - clamped
        weight = torch.exp(logprob - logprob.detach())
        weight = torch.where(logr.abs() > 20, weight.detach(), weight)
        return (weight * kl).clamp(min=-10, max=10)  # the weight multiplies before the output clamp
    return twin


def deepspeed_chat_k1(logprob, ref, old, cast=None):
    return logprob - ref


TWINS = {
    "verl_k1": verl_k1, "verl_abs": verl_abs, "verl_k2": verl_k2, "verl_low_var_kl": verl_low_var_kl,
    "verl_low_var_kl_plus": verl_low_var_kl_plus, "skyrl_k3": verl_low_var_kl,
    "trl_grpo_k3": trl_grpo_k3, "trl_grpo_k3_is": trl_grpo_k3_is, "trl_grpo_k3_is_sequence": trl_grpo_k3_is_sequence,
    "trl_ppo_k1": trl_ppo_k1, "trl_ppo_k3": trl_ppo_k3,
    "openrlhf_k1": _openrlhf("k1"), "openrlhf_k2": _openrlhf("k2"), "openrlhf_k3": _openrlhf("k3"),
    "areal_k1": _openrlhf("k1"), "roll_k3": _openrlhf("k3"),
    "slime_k1": _slime("k1", False), "slime_k3": _slime("k3", False), "slime_low_var_kl": _slime("low_var_kl", False),
    "slime_k3_is": _slime("k3", True), "slime_low_var_kl_is": _slime("low_var_kl", True),
    "nemo_rl_k1": _nemo_rl("k1"), "nemo_rl_k2": _nemo_rl("k2"), "nemo_rl_k3": _nemo_rl("k3"),
    "deepspeed_chat_k1": deepspeed_chat_k1, "nemo_aligner_abs": verl_abs,
}
WITH_EXP = {"verl_low_var_kl", "verl_low_var_kl_plus", "skyrl_k3", "trl_grpo_k3", "trl_grpo_k3_is",
            "trl_grpo_k3_is_sequence", "trl_ppo_k3", "openrlhf_k3", "roll_k3", "slime_k3", "slime_low_var_kl",
            "slime_k3_is", "slime_low_var_kl_is", "nemo_rl_k1", "nemo_rl_k2", "nemo_rl_k3"}
DTYPES = {"float64": (np.float64, torch.float64), "float32": (np.float32, torch.float32),
          "float16": (np.float16, torch.float16), "bfloat16": (ml_dtypes.bfloat16, torch.bfloat16)}


def test_every_catalog_entry_has_a_twin():
    assert set(CATALOG) - {"roll_full"} == set(TWINS)


def _inputs(np_dtype):
    """Every value of the dtype in [-60, 0] against 0 (16-bit), and dense pairs."""
    rng = np.random.default_rng(20261203)
    dense_p = np.concatenate([rng.uniform(-60, 0, 40000), -rng.exponential(0.05, 40000), rng.uniform(-2, 0, 20000)])
    dense_q = np.concatenate([rng.uniform(-60, 0, 40000), -rng.exponential(0.05, 40000),
                              dense_p[80000:] + rng.normal(0, 1e-3, 20000)])
    logp, logq = [np.clip(dense_p, -60, 0)], [np.clip(dense_q, -60, 0)]
    if np.dtype(np_dtype).itemsize == 2:
        with np.errstate(invalid="ignore"):
            values = np.arange(65536, dtype=np.uint16).view(np_dtype).astype(np.float64)
        values = values[np.isfinite(values) & (values >= -60) & (values <= 0)]
        zeros = np.zeros_like(values)
        logp += [values, zeros]
        logq += [zeros, values]
    return np.concatenate(logp).astype(np_dtype), np.concatenate(logq).astype(np_dtype)


def _to_torch(array, torch_dtype):
    if array.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy()).to(torch_dtype)


def _to_float64(tensor):
    return tensor.detach().to(torch.float64).numpy()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", sorted(TWINS))
def test_values_equal_the_twin(name, dtype):
    np_dtype, torch_dtype = DTYPES[dtype]
    logp, logq = _inputs(np_dtype)
    ours = np.asarray(REGISTRY[name].numeric(logp, logq)).astype(np.float64)
    logprob, ref = _to_torch(logq, torch_dtype), _to_torch(logp, torch_dtype)
    with torch.no_grad():
        twin = TWINS[name](logprob, ref, _on_policy(logprob))
    theirs = _to_float64(twin)
    assert (twin.dtype == torch.float32) == (REGISTRY[name].usage.computes_in == "float32" or dtype == "float32")
    assert ours.shape == theirs.shape
    same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    exp_in_wide = name in WITH_EXP and (dtype in ("float32", "float64") or REGISTRY[name].usage.computes_in == "float32")
    if not exp_in_wide:
        bad = np.nonzero(~same)[0]
        assert bad.size == 0, (f"{bad.size} differences, first at logp={logp[bad[0]]!r} logq={logq[bad[0]]!r}: "
                               f"{ours[bad[0]]!r} vs {theirs[bad[0]]!r}")
        return
    # an exp in float32/float64: within EXP_ULPS ulps of the exp's magnitude
    work = np.float32 if twin.dtype == torch.float32 else np.float64
    t = np.abs(logp.astype(np.float64) - logq.astype(np.float64))
    scale = np.spacing(np.maximum(np.exp(np.minimum(t, 80.0)), 1.0).astype(work)).astype(np.float64)
    difference = np.where(same, 0.0, np.abs(ours - theirs))
    assert np.all(difference <= EXP_ULPS * scale), np.max(difference / scale)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs))


# --------------------------------------------------------------- gradients by autograd

def _same(tensor):
    return tensor


def _oracle_gradient(name, mode, pair):
    """E[grad] of the library's loss by autograd in float64, outcomes enumerated."""
    theta = torch.tensor(pair.theta, dtype=torch.float64, requires_grad=True)
    logq = torch.log_softmax(theta, 0)
    logp = torch.log_softmax(torch.tensor(pair.p, dtype=torch.float64), 0)
    logold = torch.log_softmax(torch.tensor(pair.theta_old, dtype=torch.float64), 0)
    if name == "roll_full":  # the exact KL of the position, summed over the vocabulary
        objective = (logq.exp() * (logq - logp)).sum()
    elif mode == "reward":
        value = TWINS[name](logq, logp, logq.detach(), cast=_same).detach()
        objective = (logq.exp().detach() * value * logq).sum()
    else:
        sampler = logq.detach() if mode == "loss" else logold
        old = logq.detach() if mode == "loss" else logold
        objective = (sampler.exp() * TWINS[name](logq, logp, old, cast=_same)).sum()
    (gradient,) = torch.autograd.grad(objective, theta)
    return gradient.numpy()


CASES = [(name, mode.name, regime) for name in CATALOG for mode in gradients.library_modes(REGISTRY[name])
         for regime in ("near", "far")]


@pytest.mark.parametrize("name, mode, regime", CASES, ids=[f"{n}-{m}-{r}" for n, m, r in CASES])
def test_expected_gradients_equal_autograd_of_the_twin(name, mode, regime):
    pair = next(p for p in gradients.PAIRS if (p.family, p.regime) == ("softmax", regime))
    result = next(r for r in gradients.gradient_details(REGISTRY[name], [mode])
                  if (r.family, r.regime) == ("softmax", regime))
    oracle = _oracle_gradient(name, mode, pair)
    assert np.linalg.norm(np.array(result.gradient) - oracle) <= result.error + ORACLE_ATOL, (result.gradient, oracle)


# ------------------------------------------------------ backward passes, pair by pair

# a 16-bit gradient of float32 work: each rounding of a float32 value of magnitude <= S
# to the 16-bit dtype (slime's weighted terms: two casts back and their sum) can land
# one 16-bit ulp of S apart where the float32 values differ in their last bits
NARROW_ROUNDINGS = 3
GRADIENTS = sorted(name for name in TWINS if REGISTRY[name].numeric_grad is not None)
# log-probs beyond the default domain: exp overflows float32 at t > 88.7, masked tokens
# carry -1e4 or -inf (every pair of these, both ways)
BEYOND = np.array([0.0, -1.0, -11.5, -20.5, -60.0, -89.0, -100.0, -1e4, -np.inf])


def test_every_twin_has_a_numeric_gradient():
    """roll_full alone has none: it is no function of one sample (expr None, no numeric)."""
    assert GRADIENTS == sorted(TWINS)
    assert REGISTRY["roll_full"].numeric_grad is None


@functools.lru_cache(maxsize=None)
def _gradient_inputs(np_dtype):
    logp, logq = _inputs(np_dtype)
    beyond_p, beyond_q = (a.ravel().astype(np_dtype) for a in np.meshgrid(BEYOND, BEYOND))
    return np.concatenate([logp, beyond_p]), np.concatenate([logq, beyond_q])


def _twin_gradient(name, logp, logq, torch_dtype):
    """d twin / d logprob by autograd: logprob requires grad, backward with ones."""
    logprob = _to_torch(logq, torch_dtype).requires_grad_()
    value = TWINS[name](logprob, _to_torch(logp, torch_dtype), _on_policy(logprob))
    value.backward(torch.ones_like(value))
    gradient = logprob.grad.detach()
    if torch_dtype == torch.bfloat16:
        return gradient.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return gradient.numpy()


def _ulp(magnitude, dtype):
    """The spacing of ``dtype``'s numbers at float64 magnitudes >= 1 (that of the top binade
    beyond the dtype's largest number)."""
    top_binade = np.ldexp(1.0, np.frexp(float(ml_dtypes.finfo(dtype).max))[1] - 1)
    return np.spacing(np.minimum(magnitude, top_binade).astype(dtype)).astype(np.float64)


def _bits(array):
    return array.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[array.dtype.itemsize])


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", GRADIENTS)
def test_gradients_equal_the_twins_autograd(name, dtype):
    np_dtype, torch_dtype = DTYPES[dtype]
    logp, logq = _gradient_inputs(np_dtype)
    ours = np.asarray(REGISTRY[name].numeric_grad(logp, logq))
    theirs = _twin_gradient(name, logp, logq, torch_dtype)
    assert ours.dtype == theirs.dtype == np.dtype(np_dtype) and ours.shape == theirs.shape
    ours64, theirs64 = ours.astype(np.float64), theirs.astype(np.float64)
    nan = np.isnan(ours64)
    assert np.array_equal(nan, np.isnan(theirs64)), f"{np.sum(nan != np.isnan(theirs64))} NaN positions differ"
    computes_in_float32 = REGISTRY[name].usage.computes_in == "float32"
    if name not in WITH_EXP or (np.dtype(np_dtype).itemsize == 2 and not computes_in_float32):
        bad = np.nonzero((_bits(ours) != _bits(theirs)) & ~nan)[0]
        assert bad.size == 0, (f"{bad.size} differences, first at logp={logp[bad[0]]!r} logq={logq[bad[0]]!r}: "
                               f"{ours[bad[0]]!r} vs {theirs[bad[0]]!r}")
        return
    # an exp in float32/float64: infinities exactly; finite values within EXP_ULPS ulps of
    # the exp's magnitude S in the working dtype, plus, for a 16-bit gradient of float32
    # work, NARROW_ROUNDINGS ulps of S in the 16-bit dtype
    assert np.array_equal(np.where(np.isinf(ours64), ours64, 0), np.where(np.isinf(theirs64), theirs64, 0))
    work = np.float32 if computes_in_float32 or dtype == "float32" else np.float64
    with np.errstate(invalid="ignore"):
        t = np.abs(logp.astype(np.float64) - logq.astype(np.float64))
    finite = np.isfinite(ours64) & np.isfinite(theirs64) & np.isfinite(t)
    magnitude = np.maximum(np.exp(np.minimum(t[finite], 709.0)), 1.0)
    bound = EXP_ULPS * _ulp(magnitude, work)
    if np.dtype(np_dtype).itemsize < np.dtype(work).itemsize:
        bound += NARROW_ROUNDINGS * _ulp(magnitude, np_dtype)
    difference = np.abs(ours64[finite] - theirs64[finite])
    assert np.all(difference <= bound), np.max(difference / bound)
