"""KL terms written the way RL training libraries write them (shared/LIBRARIES.md), to
show what the floating-point layer finds in code like theirs.

Not part of the registry.  Use them as a TARGET:

    python -m verify fuzz examples/libraries.py:verl_low_var_kl --dtypes bfloat16
    python -m verify check examples/libraries.py:k3_input_dtype --claims fp_finite@float16

Two styles: arithmetic in the dtype of the log-probs (verl, TRL, NeMo-RL, SkyRL: "no
cast"), and a float32 cast of both log-probs first (OpenRLHF, slime, ROLL, AReaL), the
result stored back in the input dtype.  Each declares the floating-point claims its
formula suggests.  What ``verify fuzz`` finds at the default profile (16-bit dtypes by
exhaustive enumeration of all 289,340,100 bfloat16 / 457,018,884 float16 pairs in
[-60, 0]; failing pairs counted; ``tests/test_floating_exhaustive.py`` checks the
fp_nonnegative and fp_finite counts, and k2's fp_accurate, against its own enumeration):

| implementation | bfloat16 | float16 |
|---|---|---|
| ``verl_low_var_kl`` (input dtype) | fp_nonnegative refuted: 2,982,391 pairs (logp = 0, logq = -0.0019683837890625 gives -0.00390625); fp_accurate refuted; fp_finite, fp_matches_expression proved | fp_nonnegative refuted: 10,673,959 pairs; fp_accurate refuted; fp_finite, fp_matches_expression proved |
| ``k3_input_dtype`` (exp(t) - 1 - t, no cast, no clamp) | fp_nonnegative refuted: 123,702,981 pairs; fp_accurate refuted; fp_finite, fp_matches_expression proved | fp_nonnegative refuted: 46,940,130 pairs; fp_finite refuted: 1,051 pairs (inf where f <= 65504, e.g. logp = -0.00370025634765625, logq = -11.09375); fp_accurate refuted; fp_matches_expression refuted (the same infs) |
| ``k2_input_dtype`` | all four proved (worst 1.86 ulps) | all four proved (worst 1.87 ulps) |
| ``verl_low_var_kl_fp32`` (float32 cast) | fp_nonnegative refuted: 8,016,794 pairs (-5.96e-8, float32's exp(t) - 1 - t cancelling); fp_accurate refuted; fp_finite, fp_matches_expression proved | fp_nonnegative refuted: 2,437,101 pairs; fp_finite, fp_accurate (worst 3.47 ulps), fp_matches_expression proved |
| ``openrlhf_k3`` (float32 cast, clamp [-10, 10]) | fp_nonnegative refuted: 98,965,545 pairs; fp_accurate refuted; fp_finite, fp_matches_expression proved | fp_nonnegative refuted: 2,437,101 pairs; fp_finite, fp_accurate (worst 2.47 ulps), fp_matches_expression proved |

The float32 cast does not make k3 non-negative: float32's exp(t) - 1 - t returns
-2^-24 near r = 1, and the input dtype keeps it (bfloat16 and float16 hold -5.96e-8).
"""
import numpy as np

from estimators import Estimator

LOG_RATIO_CLAMP = 20.0
KL_CLAMP = 10.0
_FP_CLAIMS = ("fp_nonnegative", "fp_finite", "fp_accurate", "fp_matches_expression")
K3_CLAMPED = "Min(Max(exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20), -10), 10)"


def _clamp(values, bound):
    """torch.clamp(values, -bound, bound) in the values' dtype (NumPy would promote
    bfloat16 to float32 against Python floats)."""
    limit = np.asarray(bound, dtype=values.dtype)
    return np.minimum(np.maximum(values, -limit), limit)


def verl_low_var_kl_numeric(logp, logq):
    """verl kl_penalty="low_var_kl": in the dtype of the log-probs, no cast."""
    log_ratio = _clamp(logp - logq, LOG_RATIO_CLAMP)
    ratio = np.exp(log_ratio)
    return _clamp(ratio - log_ratio - 1, KL_CLAMP)


def verl_low_var_kl_fp32_numeric(logp, logq):
    """The same with both log-probs cast to float32 first, stored back in the input dtype."""
    dtype = np.asarray(logp).dtype
    value = verl_low_var_kl_numeric(np.asarray(logp).astype(np.float32), np.asarray(logq).astype(np.float32))
    return value.astype(dtype)


def k3_input_dtype_numeric(logp, logq):
    """k3 as ``log_ratio.exp() - 1 - log_ratio`` in the dtype of the log-probs (OpenRLHF's
    formula without its float32 cast and clamp; TRL GRPO's per-token KL)."""
    log_ratio = logp - logq
    return np.exp(log_ratio) - 1 - log_ratio


def openrlhf_k3_numeric(logp, logq):
    """OpenRLHF k3: both log-probs cast to float32, exp(t) - 1 - t, clamped to [-10, 10]."""
    dtype = np.asarray(logp).dtype
    log_ratio = np.asarray(logp).astype(np.float32) - np.asarray(logq).astype(np.float32)
    value = _clamp(np.exp(log_ratio) - 1 - log_ratio, KL_CLAMP)
    return value.astype(dtype)


def k2_input_dtype_numeric(logp, logq):
    """k2 ("mse") as ``0.5 * (logp - logq).square()`` in the dtype of the log-probs."""
    log_ratio = logp - logq
    return 0.5 * (log_ratio * log_ratio)


verl_low_var_kl = Estimator(
    name="verl_low_var_kl",
    expr=K3_CLAMPED,
    numeric=verl_low_var_kl_numeric,
    claims=("nonnegative",) + _FP_CLAIMS,
    source="verl kl_penalty='low_var_kl', arithmetic in the log-probs' dtype",
    description="k3 with clamps, computed in bfloat16/float16 when the log-probs are.",
)

verl_low_var_kl_fp32 = Estimator(
    name="verl_low_var_kl_fp32",
    expr=K3_CLAMPED,
    numeric=verl_low_var_kl_fp32_numeric,
    claims=("nonnegative",) + _FP_CLAIMS,
    source="verl low_var_kl with a float32 cast of both log-probs",
    description="The same formula, computed in float32 and stored in the input dtype.",
)

k3_input_dtype = Estimator(
    name="k3_input_dtype",
    expr="(r - 1) - log(r)",
    numeric=k3_input_dtype_numeric,
    claims=("nonnegative",) + _FP_CLAIMS,
    source="OpenRLHF / TRL k3: log_ratio.exp() - 1 - log_ratio, in the log-probs' dtype",
    description="k3 without expm1, without a cast: negative near r = 1, inf where exp(t) overflows.",
)

openrlhf_k3 = Estimator(
    name="openrlhf_k3",
    expr="Min(Max((r - 1) - log(r), -10), 10)",
    numeric=openrlhf_k3_numeric,
    claims=("nonnegative",) + _FP_CLAIMS,
    source="OpenRLHF compute_approx_kl, kl_estimator='k3': float32 cast, result clamped to [-10, 10]",
    description="k3 in float32 with OpenRLHF's clamp, stored in the input dtype.",
)

k2_input_dtype = Estimator(
    name="k2_input_dtype",
    expr="log(r)**2 / 2",
    numeric=k2_input_dtype_numeric,
    claims=("nonnegative",) + _FP_CLAIMS,
    source="verl / OpenRLHF k2 ('mse'): 0.5 * (logp - logq)**2, in the log-probs' dtype",
    description="k2 as libraries write it.",
)
