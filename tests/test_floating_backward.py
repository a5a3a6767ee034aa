"""The backward-pass claims (fp_grad_finite, fp_grad_accurate): hidden 0 x inf gradients of
torch terms refuted in float16 with exactly the failing counts of an independent
enumeration (per-pair autograd, exact gradients from mpmath written here), a term that
bounds the log ratio before exp proved in float16 and bfloat16, the compiled and NumPy
decisions equal, the exact gradient against mpmath, "not applicable" without autograd,
--domain's bad inputs, and -inf in the domain.

The domains are small on purpose: [-1040, -1000] holds 65 float16 values (spacing 0.5 and
1), so its 4,225 pairs reach log ratios of +-40 (float16's exp overflows beyond 11.09) and
hit the clamps' kinks at t = +-10 exactly; [-2, -1] holds the cancellation of 1 - e^t."""
from __future__ import annotations

import math
import os

import mpmath
import numpy as np
import pytest

from verify.core.claims import BACKWARD, NOT_APPLICABLE
from verify.layers.floating import check_callable

if os.environ.get("CI"):
    import torch  # noqa: F401 - in CI a missing torch must fail, never skip
else:
    torch = pytest.importorskip("torch")

SMALL = (-1040.0, -1000.0)
NEAR_ONE = (-2.0, -1.0)
CLAMP_AFTER = "Min(Max(r - 1 - log(r), -10), 10)"
WHERE_BRANCH = "exp(Min(log(r), 10)) - 1 - Min(log(r), 10)"
BOUNDED = "exp(Min(Max(log(r), -10), 10)) - 1 - Min(Max(log(r), -10), 10)"
FLOAT16_MAX, FLOAT16_SMALLEST_NORMAL = 65504.0, 2.0 ** -14


def clamp_after(logp, logq):
    """k3 clamped after exp (the value stays finite; exp's gradient is 0 x inf where it overflowed)."""
    t = logp - logq
    return (torch.exp(t) - 1 - t).clamp(-10, 10)


def where_branch(logp, logq):
    """k3 below t = 10, its value at 10 above: the branch not taken still back-propagates."""
    t = logp - logq
    safe = torch.full_like(t, math.exp(10) - 11)
    return torch.where(t < 10, torch.exp(t) - 1 - t, safe)


def bounded(logp, logq):
    """The log ratio bounded before exp, in float32 from 16-bit inputs (OpenRLHF's fix)."""
    t = (logp.float() - logq.float()).clamp(-10, 10)
    return (torch.exp(t) - 1 - t).to(logp.dtype)


def float16_values(low, high):
    bits = np.arange(2 ** 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(np.float16).astype(np.float64)
    return values[np.isfinite(values) & (values >= low) & (values <= high)]


def exact_gradients(derivative, logp, logq):
    """-g'(t) by mpmath at 80 digits, t formed exactly: a pair (left, right) of one-sided
    derivatives where ``derivative(t)`` says it is a kink (returns a pair), else a point."""
    with mpmath.workdps(80):
        found = derivative(mpmath.mpf(logp) - mpmath.mpf(logq))
    return found if isinstance(found, tuple) else (found, found)


def clamp_after_derivative(t):
    """g = clamp(e^t - 1 - t, -10, 10): g' = e^t - 1 inside, 0 outside (the kinks are
    transcendental: no float16 t hits them)."""
    return mpmath.exp(t) - 1 if abs(mpmath.exp(t) - 1 - t) < 10 else mpmath.mpf(0)


def where_derivative(t):
    """g = k3(min(t, 10)): g' = e^t - 1 below 10, 0 above; at t = 10 both sides."""
    if t == 10:
        return (mpmath.mpf(0), mpmath.exp(10) - 1)
    return mpmath.exp(t) - 1 if t < 10 else mpmath.mpf(0)


def float16_ulp(x):
    exponent = max(int(mpmath.floor(mpmath.log(abs(x), 2))) if x != 0 else -14, -14)
    return mpmath.ldexp(1, exponent - 10)


def accepted(value, exact):
    """docs/claims.md's fp_grad_accurate in float16 with the default 4 ulps, written again."""
    if abs(exact) > FLOAT16_MAX:
        return value in (math.copysign(math.inf, exact), math.copysign(FLOAT16_MAX, exact))
    if not math.isfinite(value):
        return False
    error = abs(mpmath.mpf(value) - exact)
    return bool((error <= 4 * float16_ulp(exact) or error < FLOAT16_SMALLEST_NORMAL) and not value * exact < 0)


def independent_counts(fn, derivative, low, high):
    """Failing pairs of both claims by per-pair torch autograd (one pair per call) and mpmath."""
    values = float16_values(low, high)
    failing = {"fp_grad_finite": 0, "fp_grad_accurate": 0}
    for logq in values:
        for logp in values:
            p = torch.tensor([logp], dtype=torch.float16)
            q = torch.tensor([logq], dtype=torch.float16, requires_grad=True)
            fn(p, q).sum().backward()
            value = float(q.grad[0])
            left, right = exact_gradients(derivative, logp, logq)
            low_g, high_g = sorted((-left, -right))
            fits = max(abs(low_g), abs(high_g)) <= FLOAT16_MAX
            failing["fp_grad_finite"] += fits and not math.isfinite(value)
            candidates = [low_g, high_g] + ([mpmath.mpf(value)] if math.isfinite(value) and low_g < value < high_g
                                            else [])
            failing["fp_grad_accurate"] += not any(accepted(value, x) for x in candidates)
    return failing, len(values) ** 2


def failing_count(verdict):
    detail = verdict.detail.split(";")[0]
    if verdict.verdict == "proved":
        return 0
    assert verdict.verdict == "refuted" and detail.endswith("pairs fail") and "at least" not in detail, verdict
    return int(detail.split(" of ")[0].replace(",", ""))


@pytest.mark.parametrize("fn, expression, derivative", [(clamp_after, CLAMP_AFTER, clamp_after_derivative),
                                                        (where_branch, WHERE_BRANCH, where_derivative)])
def test_a_hidden_zero_times_inf_is_refuted_with_the_independent_count(fn, expression, derivative):
    expected, pairs = independent_counts(fn, derivative, *SMALL)
    assert pairs == 65 * 65 and expected["fp_grad_finite"] > 0  # the NaN gradients are there to be found
    verdicts = check_callable(fn, expression, "float16", claims=BACKWARD, framework="torch", domain=SMALL)
    assert {c: failing_count(verdicts[c]) for c in BACKWARD} == expected
    example = verdicts["fp_grad_finite"].counterexample
    assert example["gradient"] == "nan" and example["exact_gradient"] == 0.0  # 0 x inf where exp overflowed
    assert example["logp"] - example["logq"] > math.log(FLOAT16_MAX)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("domain", [SMALL, NEAR_ONE])
def test_bounding_the_log_ratio_before_exp_is_proved(dtype, domain):
    verdicts = check_callable(bounded, BOUNDED, dtype, claims=BACKWARD, framework="torch", domain=domain)
    assert {c: v.verdict for c, v in verdicts.items()} == {c: "proved" for c in BACKWARD}, verdicts


def test_the_compiled_pass_decides_as_numpy(monkeypatch):
    from verify.layers.floating import backward_sweep

    def counts():
        found = check_callable(clamp_after, CLAMP_AFTER, "float16", claims=BACKWARD, framework="torch",
                               domain=SMALL)
        return {c: (v.verdict, v.detail.split(";")[0], v.counterexample) for c, v in found.items()}

    compiled = counts()
    monkeypatch.setattr(backward_sweep, "kernel_program", lambda derivative, taylor: None)
    assert counts() == compiled


def test_the_exact_gradient_agrees_with_mpmath():
    from verify.layers.floating.exact_gradient import ExactGradient
    from verify.layers.floating.reference import Reference

    for expression, g in (("r - 1 - log(r)", lambda t: mpmath.exp(t) - 1 - t),
                          ("log(r)**2/2", lambda t: t ** 2 / 2),
                          ("sqrt(r) - 1 - log(r)/2", lambda t: mpmath.exp(t / 2) - 1 - t / 2),
                          (BOUNDED, lambda t: mpmath.exp(t) - 1 - t)):
        exact = ExactGradient(Reference(expression))
        for logp, logq in ((-1.5, -0.25), (-3.0, -9.0), (-0.001, -0.0011), (-2.0, -5.0)):
            with mpmath.workdps(50):
                t = mpmath.mpf(logp) - mpmath.mpf(logq)
                reference = -mpmath.diff(g, t)  # numerical differentiation at 50 digits
            low, high = exact.at(logp, logq)
            with mpmath.workdps(50):
                assert low == high and abs(low - reference) <= mpmath.mpf(10) ** -30 * max(1, abs(reference))
    clamp = ExactGradient(Reference(BOUNDED))
    low, high = clamp.at(-1000.0, -1010.0)  # t = 10: the kink of the clamp
    with mpmath.workdps(50):
        assert high == 0 and abs(low - (1 - mpmath.exp(10))) < mpmath.mpf(10) ** -30
    for expression, at_zero in (("-log(r)", 1), ("r - 1 - log(r)", 1), ("log(r)**2/2", mpmath.inf)):
        assert ExactGradient(Reference(expression)).at(-math.inf, -1.0) == (at_zero, at_zero)


def test_a_numpy_implementation_has_no_autograd():
    from verify.api import check_implementation

    def k3(logp, logq):
        t = logp - logq
        return np.exp(t) - 1 - t

    found = check_callable(k3, "r - 1 - log(r)", "float16", claims=BACKWARD)
    assert {v.verdict for v in found.values()} == {"undecided"}
    assert {v.method for v in found.values()} == {NOT_APPLICABLE} and not any(v.detail for v in found.values())
    # with its gradient as numeric_grad it is checked
    with_gradient = check_callable(k3, "r - 1 - log(r)", "float16", claims=BACKWARD, domain=NEAR_ONE,
                                   numeric_grad=lambda logp, logq: (1 - np.exp(logp - logq)).astype(logq.dtype))
    assert {v.verdict for v in with_gradient.values()} <= {"proved", "refuted"}
    names = check_implementation(k3, "r - 1 - log(r)", claims=["fp_grad_finite@float16"], dtypes=["float16"])
    assert names["fp_grad_finite@float16"].method == NOT_APPLICABLE


@pytest.mark.parametrize("domain", ["--domain=0,-1", "--domain=-1,1", "--domain=-1,inf", "--domain=abc",
                                    "--domain=-1", "--domain=nan,0", "--domain=-5,-5"])
def test_a_bad_domain_is_one_line_and_exit_2(domain, capsys):
    from verify.cli import main

    assert main(["check", "k3", "--claims", "fp_finite@float16", domain]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--domain" in err


def test_minus_inf_in_the_domain():
    """Masked tokens: logp = -inf is r = 0 (f(0) and the gradient's limit), logq = -inf never sampled."""
    domain = (-math.inf, -60000.0)  # every float16 value <= -60000 (173, spacing 32) and -inf
    n = len(float16_values(-math.inf, -60000.0))
    values = check_callable(clamp_after, CLAMP_AFTER, "float16", claims=["fp_finite"] + list(BACKWARD),
                            framework="torch", domain=domain, profile="dev")
    for claim in ("fp_finite",) + BACKWARD:
        assert f"{n:,} pair(s) with logp = -inf" in values[claim].detail
        assert f"{n + 1:,} pair(s) with logq = -inf skipped" in values[claim].detail
    # exp overflows everywhere t > 11.09 here, and the clamp's zero gradient meets it
    assert values["fp_grad_finite"].verdict == "refuted" and values["fp_finite"].verdict == "proved"
    searched = check_callable(bounded, BOUNDED, "float32", claims=["fp_finite", "fp_grad_finite"],
                              framework="torch", domain=(-math.inf, 0.0), profile="dev")
    assert {v.verdict for v in searched.values()} == {"tested"}, searched
    assert all("pair(s) with logp = -inf" in v.detail for v in searched.values()), searched


@pytest.mark.parametrize("at_kink, failing", [(0.0, 0), (-1.0, 0), (1.0, 0), (2.0, 1025)])
def test_at_a_kink_either_one_sided_derivative_or_between_passes(at_kink, failing):
    """|log r| at logp = logq (the 1,025 pairs of [-2, -1] with t = 0): the gradient with
    respect to logq is -1 on one side and +1 on the other; 0 (torch's abs), -1 and +1 pass."""
    def absolute(logp, logq):
        return np.abs(logp - logq)

    def gradient(logp, logq):
        t = logp.astype(np.float64) - logq.astype(np.float64)
        return np.where(t == 0, at_kink, -np.sign(t)).astype(logq.dtype)

    found = check_callable(absolute, "Abs(log(r))", "float16", claims=["fp_grad_accurate"], numeric_grad=gradient,
                           domain=NEAR_ONE)
    assert failing_count(found["fp_grad_accurate"]) == failing
    if failing:
        example = found["fp_grad_accurate"].counterexample
        assert example["logp"] == example["logq"] and example["at_kink"] and example["exact_gradient"] == [-1.0, 1.0]


def test_the_plugin_asserts_the_backward_claims_of_a_torch_implementation():
    from verify.pytest_plugin import assert_fp_claims

    with pytest.raises(AssertionError, match=r"fp_grad_finite@float16: refuted \(exhaustive enumeration\)"):
        assert_fp_claims(clamp_after, CLAMP_AFTER, dtypes=["float16"], framework="torch", domain=SMALL)
    verdicts = assert_fp_claims(bounded, BOUNDED, claims=list(BACKWARD), dtypes=["float16", "bfloat16"],
                                framework="torch", domain=SMALL)
    assert set(verdicts) == {f"{c}@{d}" for c in BACKWARD for d in ("float16", "bfloat16")}


def test_a_derivative_unbounded_at_a_kink_is_undefined_there():
    """t log|t| has g' = log|t| + 1 -> -inf at t = 0: no finite one-sided derivative, so
    the 33 diagonal pairs (t = 0) of this float16 domain are skipped as undefined and said
    so, instead of judged against the derivative 2^-300 away (a wrong refutation)."""
    def t_log_abs(logp, logq):
        t = logp - logq
        return t * torch.log(t.abs())

    verdict = check_callable(t_log_abs, "log(r)*log(Abs(log(r)))", "float16", claims=("fp_grad_finite",),
                             framework="torch", workers=1, domain=(-60.0, -59.0))["fp_grad_finite"]
    diagonal = len(float16_values(-60.0, -59.0))
    assert verdict.verdict == "proved", verdict  # was refuted on the diagonal: +inf against 206.9
    assert f"exact gradient undefined at {diagonal:,} pair(s), skipped" in verdict.detail


def test_undefined_pairs_are_counted_not_settled():
    """sqrt(t + 1) has no real gradient for t <= -1 (at -1 it is infinite, the kink of
    the domain): those pairs are skipped and counted as undefined, not reported as
    settled by mpmath."""
    def sqrt_shifted(logp, logq):
        return torch.sqrt(logp - logq + 1)

    verdict = check_callable(sqrt_shifted, "sqrt(log(r) + 1)", "float16", claims=("fp_grad_finite",),
                             framework="torch", workers=1, domain=(-60.0, -58.0))["fp_grad_finite"]
    values = float16_values(-60.0, -58.0)
    undefined = int(np.count_nonzero(values[:, None] - values[None, :] <= -1))
    assert f"exact gradient undefined at {undefined:,} pair(s), skipped" in verdict.detail
    assert "; 0 pair(s) settled by mpmath" in verdict.detail


def test_a_constant_derivative_is_decided():
    """k1's gradient is the constant -1 (no Taylor model is needed, none can be built):
    decided, not 'implementation failed'."""
    from estimators import registry
    from verify.api import check

    verdicts = check(registry()["verl_k1"], ["fp_grad_finite@float16", "fp_grad_accurate@bfloat16"],
                     domain=(-60.0, -59.0)).verdicts
    assert {claim: v.verdict for claim, v in verdicts.items()} == {
        "fp_grad_finite@float16": "proved", "fp_grad_accurate@bfloat16": "proved"}


def test_the_specialised_kernel_decides_as_the_interpreting_one(monkeypatch):
    """The compiled pass with the derivative's tape inlined (backward_kernel.specialised_rows)
    and the one interpreting the tape give the same verdicts, counts and examples."""
    from verify.layers.floating import backward_kernel

    def decided():
        found = check_callable(clamp_after, CLAMP_AFTER, "float16", claims=BACKWARD, framework="torch",
                               domain=SMALL)
        return {c: (v.verdict, v.detail, v.counterexample) for c, v in found.items()}

    from verify.layers.floating.exact_gradient import derivative_enclosure
    from verify.layers.floating.reference import Reference

    reference = Reference(CLAMP_AFTER)
    tape = derivative_enclosure(reference.expression, reference.log_ratio)
    assert backward_kernel.specialised_rows(*tape.tape()) is not None  # the clamp's Heaviside is inlined too
    specialised = decided()
    monkeypatch.setattr(backward_kernel, "specialised_rows", lambda codes, constants: None)
    assert decided() == specialised
