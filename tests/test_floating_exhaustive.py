"""The 16-bit verdicts against an independent exhaustive enumeration.

Library-style implementations (examples/libraries.py) are run over every pair of
their dtype in a part of [-60, 0] (``CASES``: the gate, ``verify all``, sweeps the whole
domain for every catalog entry; here a part keeps the suite fast and still holds every
kind of failure) by this file's own code: its own list of values (bit patterns),
its own counting, and exact decisions that share nothing with the layer (no interval
arithmetic, no mpmath reference of the layer):

- fp_nonnegative: value >= 0, counted;
- fp_finite: for verl's low_var_kl (|f| <= 10) and k2 (f <= 1800) every non-finite value
  fails; for k3 in float16 f is in range iff t <= T, with T the root of
  e^T - 1 - T = 65504 (mpmath.findroot at 50 digits; k3 is increasing for t > 0 and
  f(t) < 61 for t <= 0); t = logp - logq is exact in float64 for float16 inputs;
- fp_accurate for k2 in float16: integer arithmetic.  Inputs are k 2^-24, so
  f = t^2/2 = k^2 2^-49 exactly, and the value is m 2^-24: the error is
  |m 2^25 - k^2| 2^-49, compared with 4 ulps of f and the smallest normal 2^-14.

The layer must give the same verdicts and the same failure counts, and its
counterexample must fail again when the implementation is called on it alone.
"""
import math

import ml_dtypes
import mpmath
import numpy as np
import pytest

from verify.core.claims import FLOATING
from verify.layers.floating import check_claims
from verify.layers.floating.dtype_run import DtypeRun, numpy_implementation
from verify.api.targets import resolve

NUMPY = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
ROWS = 64


def every_value(dtype, domain):
    """Every finite value of the dtype in ``domain``, -0.0 included (bit patterns)."""
    bits = np.arange(1 << 16, dtype=np.uint16).view(NUMPY[dtype])
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        wide = bits.astype(np.float64)
    keep = np.isfinite(wide) & (wide >= domain[0]) & (wide <= domain[1])
    return bits[keep]


def k3_overflow_log_ratio():
    """T with e^T - 1 - T = 65504 (float16's largest finite number), at 50 digits."""
    with mpmath.workdps(50):
        return mpmath.findroot(lambda t: mpmath.expm1(t) - t - 65504, 11.09)


def enumerate_independently(numeric, dtype, domain, in_range, accuracy=None):
    """{claim: failing pairs} over every pair; ``in_range(t)``: f within the finite
    range at t (float64, exact for float16); ``accuracy(logp, logq, value)``: failing mask."""
    values = every_value(dtype, domain)
    wide = values.astype(np.float64)
    counts = {"fp_nonnegative": 0, "fp_finite": 0, "fp_accurate": 0}
    for start in range(0, len(values), ROWS):
        logq = np.repeat(values[start:start + ROWS], len(values))
        logp = np.tile(values, len(values[start:start + ROWS]))
        with np.errstate(all="ignore"):
            value = np.asarray(numeric(logp, logq)).astype(np.float64)
        counts["fp_nonnegative"] += int(np.count_nonzero(~(value >= 0)))
        t = np.tile(wide, len(values[start:start + ROWS])) - np.repeat(wide[start:start + ROWS], len(values))
        counts["fp_finite"] += int(np.count_nonzero(~np.isfinite(value) & in_range(t)))
        if accuracy is not None:
            counts["fp_accurate"] += int(np.count_nonzero(accuracy(logp, logq, value)))
    return counts, len(values) ** 2


def k2_float16_inaccurate(logp, logq, value):
    """fp_accurate failures of a k2 value in float16, in exact integer arithmetic."""
    k = np.rint((logp.astype(np.float64) - logq.astype(np.float64)) * 2.0 ** 24).astype(np.int64)
    k_squared = k * k  # < 2**60
    finite = np.isfinite(value)
    m = np.rint(np.where(finite, value, 0.0) * 2.0 ** 24).astype(np.int64)
    error = np.abs(m * (1 << 25) - k_squared)  # in units of 2**-49
    # ulp of f = k^2 2^-49 in float16: 2^(floor(log2 f) - 10) for f >= 2^-14, else 2^-24
    exponent = np.frexp(k_squared.astype(np.float64))[1]  # bit length, up to rounding:
    exponent = np.where((exponent > 0) & (np.left_shift(np.int64(1), np.maximum(exponent - 1, 0)) > k_squared),
                        exponent - 1, exponent)
    ulp_units = np.where(k_squared >= (1 << 35), np.left_shift(np.int64(1), np.maximum(exponent - 11, 0)), 1 << 25)
    accurate = (error <= 4 * ulp_units) | (error < (1 << 35))
    return ~finite | ~accurate


# (target, dtype, domain, in_range, accuracy).  The domains hold verl's negative values
# near t = 0 and its clamp at |t| = 20, k3's overflow beyond t = 11.09, and for k2 (no
# failure in the whole domain either) 105 million squares checked in integers.
CASES = {
    "verl_low_var_kl@bfloat16": ("examples/libraries.py:verl_low_var_kl", "bfloat16", (-24.0, -2.0 ** -12),
                                 lambda t: np.ones(t.shape, dtype=bool), None),
    "k3_input_dtype@float16": ("examples/libraries.py:k3_input_dtype", "float16", (-16.0, -0.25),
                               lambda t: t <= float(k3_overflow_log_ratio()), None),
    "k2_input_dtype@float16": ("examples/libraries.py:k2_input_dtype", "float16", (-16.0, -2.0 ** -6),
                               lambda t: np.ones(t.shape, dtype=bool), k2_float16_inaccurate),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    from verify.layers.floating import tolerances

    target, dtype, domain, in_range, accuracy = CASES[request.param]
    estimator = resolve(target)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tolerances, "SWEEP_DOMAIN", domain)
        found = check_claims(estimator, list(FLOATING), dtype, profile="ci")
        verdicts = {f"{c}@{dtype}": verdict for c, verdict in found.items()}
    counts, pairs = enumerate_independently(estimator.numeric, dtype, domain, in_range, accuracy)
    return estimator, dtype, verdicts, counts, pairs, accuracy


def _failing_count(verdict):
    if verdict.verdict == "proved":
        return 0
    assert verdict.verdict == "refuted", verdict
    return int(verdict.detail.split(" of ")[0].replace(",", ""))


def test_verdicts_and_counts_agree_with_an_independent_enumeration(case):
    estimator, dtype, verdicts, counts, pairs, accuracy = case
    claims = ["fp_nonnegative", "fp_finite"] + (["fp_accurate"] if accuracy is not None else [])
    for claim in claims:
        verdict = verdicts[f"{claim}@{dtype}"]
        assert f"all {pairs:,} (logp, logq) pairs of {dtype}" in verdict.detail
        assert verdict.verdict == ("refuted" if counts[claim] else "proved"), (claim, verdict, counts)
        assert _failing_count(verdict) == counts[claim], (claim, verdict.detail, counts)
    for verdict in verdicts.values():
        assert verdict.verdict in ("proved", "refuted"), verdict  # never `tested` for a 16-bit dtype
        assert verdict.worst is not None and "ulps" in verdict.worst


def test_counterexamples_fail_again_alone(case):
    estimator, dtype, verdicts, _, _, accuracy = case
    for claim, verdict in verdicts.items():
        if verdict.verdict != "refuted":
            continue
        example = verdict.counterexample
        logp = np.array([example["logp"]]).astype(NUMPY[dtype])
        logq = np.array([example["logq"]]).astype(NUMPY[dtype])
        assert float(logp[0]) == example["logp"] and float(logq[0]) == example["logq"]
        with np.errstate(all="ignore"):
            value = float(np.asarray(estimator.numeric(logp, logq)).astype(np.float64)[0])
        assert repr(value) == repr(float(example["value"])) or (math.isnan(value) and example["value"] == "nan")
        with mpmath.workdps(60):
            t = mpmath.mpf(example["logp"]) - mpmath.mpf(example["logq"])
            exact = mpmath.expm1(t) - t if "k3" in estimator.name or "low_var" in estimator.name else t * t / 2
        if claim.startswith("fp_nonnegative"):
            assert not value >= 0
        elif claim.startswith("fp_finite"):
            assert not math.isfinite(value) and abs(exact) <= 65504
        elif claim.startswith("fp_accurate") and accuracy is not None:
            assert accuracy(logp, logq, np.array([value]))[0]


def test_the_issue_examples():
    """verl low_var_kl in bfloat16 at logp = 0, logq = -0.0019683837890625 gives
    -0.00390625; k3 in float16 gives inf at logp = -0.00370025634765625, logq = -11.09375
    (exact 65503.9 <= 65504)."""
    verl = resolve("examples/libraries.py:verl_low_var_kl").numeric
    bf16 = NUMPY["bfloat16"]
    value = verl(np.array([0.0]).astype(bf16), np.array([-0.0019683837890625]).astype(bf16))
    assert float(value[0]) == -0.00390625
    k3 = resolve("examples/libraries.py:k3_input_dtype").numeric
    with np.errstate(over="ignore"):
        value = k3(np.array([-0.00370025634765625], np.float16), np.array([-11.09375], np.float16))
    assert math.isinf(float(value[0]))
    assert -0.00370025634765625 + 11.09375 <= k3_overflow_log_ratio()


@pytest.mark.parametrize("target", ["examples/naive.py:k3_exp", "examples/libraries.py:verl_low_var_kl",
                                    "examples/naive.py:k4_blog", "k3"])
@pytest.mark.parametrize("dtype, domain", [("bfloat16", (-1.0, -0.5)), ("float16", (-0.53125, -0.5))])
def test_vectorised_decisions_agree_with_the_exact_judge_pair_by_pair(target, dtype, domain):
    """On a small domain (bfloat16 [-1, -0.5]: t in [-0.5, 0.5], the cancellation band
    and the Taylor model's ball included; float16: 65 values near -0.5) the
    enumeration's failure counts equal those of the exact per-pair judge (mpmath at the
    exact inputs) run on every pair."""
    from verify.layers import floating
    from verify.layers.floating.exhaustive import all_values, enumerate_pairs

    estimator = resolve(target)
    run = DtypeRun(floating.DTYPE_INFO[dtype], numpy_implementation(estimator), floating.Reference(estimator.expr),
                   floating.ACCURATE_ULPS)
    enclosures = run.enclosures()
    tally = enumerate_pairs(run.info, NUMPY[dtype], domain, run.evaluate_exact, list(FLOATING),
                            enclosure=enclosures.function, taylor=enclosures.taylor,
                            derivative=enclosures.derivative, accurate_ulps=run.accurate_ulps, atol=0.0,
                            match_ulps=floating.MATCH_ULPS, judge=run.judge)
    values = all_values(NUMPY[dtype], domain)
    expected = dict.fromkeys(FLOATING, 0)
    for logq in values.tolist():
        outputs = run.evaluate(values, np.full_like(values, logq))
        for logp, value in zip(values.tolist(), outputs.tolist()):
            outcome = run.judge(logp, logq, value)
            for claim in FLOATING:
                if claim in outcome and not outcome[claim][0]:
                    expected[claim] += 1
    assert tally.pairs == len(values) ** 2
    assert {c: tally.failures.get(c, 0) for c in FLOATING} == expected, (tally.failures, expected)


@pytest.mark.parametrize("target", ["examples/libraries.py:verl_low_var_kl", "examples/naive.py:k4_blog"])
def test_the_tally_does_not_depend_on_chunks_or_workers(target, monkeypatch):
    """Failure counts, kept examples, worst errors and the pairs left to the exact judge
    are the same with one row per chunk or many, swept here or in two forked workers."""
    from verify.layers import floating
    from verify.layers.floating import exhaustive

    estimator = resolve(target)
    run = DtypeRun(floating.DTYPE_INFO["bfloat16"], numpy_implementation(estimator), floating.Reference(estimator.expr),
                   floating.ACCURATE_ULPS)
    enclosures = run.enclosures()

    def sweep(workers):
        tally = exhaustive.enumerate_pairs(
            run.info, NUMPY["bfloat16"], (-2.0, -0.25), run.evaluate_exact, list(FLOATING),
            enclosure=enclosures.function, taylor=enclosures.taylor, derivative=enclosures.derivative,
            accurate_ulps=run.accurate_ulps, atol=0.0, match_ulps=floating.MATCH_ULPS, judge=run.judge,
            workers=workers)
        return (tally.pairs, tally.failures, tally.examples, tally.worst_ulps, tally.worst_abs,
                tally.settled_by_mpmath, tally.unsettled, tally.undefined)

    monkeypatch.setattr(exhaustive, "CHUNK_PAIRS", 1)  # one row per chunk
    one_row = sweep(1)
    assert one_row[1], "the implementation fails somewhere here: the examples are compared"
    monkeypatch.setattr(exhaustive, "CHUNK_PAIRS", 1 << 16)  # many rows per chunk
    assert sweep(1) == one_row
    assert sweep(2) == one_row


KERNEL_CASES = [
    # the Taylor ball and the cancellation band, in both dtypes
    ("k3", "bfloat16", (-1.0, -0.5)),
    ("examples/libraries.py:verl_low_var_kl", "bfloat16", (-2.0, -0.25)),
    ("examples/naive.py:k4_blog", "bfloat16", (-2.0, -0.25)),
    ("examples/naive.py:k3_exp", "float16", (-0.53125, -0.5)),
    ("examples/libraries.py:verl_low_var_kl", "float16", (-0.75, -0.5)),
    # float16's overflow: k3 beyond 65504 for t > 11.09 (inf or max there), and the
    # implementation's inf where f is in range
    ("k3", "float16", (-12.0, -0.75)),
    ("examples/libraries.py:k3_input_dtype", "float16", (-12.0, -0.75)),
    # fp_nonnegative fails on every pair with log p > log q (counted in the kernel)
    ("k1", "bfloat16", (-2.0, -0.25)),
    ("k1", "float16", (-0.75, -0.5)),
]


@pytest.mark.parametrize("target, dtype, domain", KERNEL_CASES)
def test_the_compiled_kernel_gives_the_vectorised_tally(target, dtype, domain, monkeypatch):
    """The compiled kernel (numba) passes pairs, counts fp_accurate failures and picks the
    worst errors exactly as the NumPy sweep does: the same failure counts, kept examples,
    worst errors, pairs left to mpmath and pairs queued for it."""
    from verify.layers import floating
    from verify.layers.floating import exhaustive, kernel

    assert kernel.load_numba() is not None, "numba (a dependency) compiles the kernel"
    estimator = resolve(target)
    run = DtypeRun(floating.DTYPE_INFO[dtype], numpy_implementation(estimator), floating.Reference(estimator.expr),
                   floating.ACCURATE_ULPS)
    enclosures = run.enclosures()

    def sweep():
        tally = exhaustive.enumerate_pairs(
            run.info, NUMPY[dtype], domain, run.evaluate_exact, list(FLOATING),
            enclosure=enclosures.function, taylor=enclosures.taylor, derivative=enclosures.derivative,
            accurate_ulps=run.accurate_ulps, atol=0.0, match_ulps=floating.MATCH_ULPS, judge=run.judge)
        return (tally.pairs, tally.failures, tally.examples, tally.worst_ulps, tally.worst_abs,
                tally.settled_by_mpmath, tally.unsettled, tally.undefined)

    compiled = sweep()
    assert exhaustive.SweepPlan(run.info, NUMPY[dtype], domain, run.evaluate_exact, list(FLOATING),
                                enclosures.function, enclosures.taylor, enclosures.derivative, run.accurate_ulps, 0.0,
                                floating.MATCH_ULPS).kernel is not None
    monkeypatch.setattr(kernel, "_NUMBA", False)  # the NumPy sweep
    assert exhaustive.SweepPlan(run.info, NUMPY[dtype], domain, run.evaluate_exact, list(FLOATING),
                                enclosures.function, enclosures.taylor, enclosures.derivative, run.accurate_ulps, 0.0,
                                floating.MATCH_ULPS).kernel is None
    assert sweep() == compiled


def test_the_kernel_tape_is_the_interval_evaluation():
    """``IntervalFunction.tape`` run by the kernel's interpreter gives the enclosures of
    ``IntervalFunction`` itself, bit for bit, on points and intervals (every instruction)."""
    import sympy as sp

    from verify.layers.floating import kernel
    from verify.layers.floating.interval import IntervalFunction

    assert kernel.interpreting_kernel() is not None, "numba (a dependency) compiles the kernel"
    t = sp.Symbol("t", real=True)
    expressions = [sp.exp(t) - 1 - t, -t, t ** 2 / 2, sp.log(1 + sp.exp(t)), sp.sqrt(sp.Abs(t) + 1),
                   sp.Min(sp.Max(sp.exp(sp.Min(sp.Max(t, -20), 20)) - 1 - sp.Min(sp.Max(t, -20), 20), -10), 10),
                   (sp.exp(t) + 2) ** sp.Rational(3, 2), 1 / (t ** 2 + 1) - sp.log(2) * t ** 3, sp.sign(t) * t,
                   sp.Heaviside(t) * t, sp.exp(t) ** sp.pi]
    points = np.concatenate([np.linspace(-60, 60, 241), [0.0, -0.0, 1e-300, -2.0 ** -24, 2.0 ** -10]])
    for expression in expressions:
        function = IntervalFunction(expression, t)
        codes, constants = function.tape()
        for t_lo, t_hi in [(points, points), (points - np.abs(points) * 2.0 ** -40, points + 2.0 ** -30)]:
            lo, hi = function(t_lo, t_hi)
            registers = np.empty(len(codes)), np.empty(len(codes))
            for i in range(len(points)):
                got = kernel._enclose_tape(float(t_lo[i]), float(t_hi[i]), codes, constants, *registers)
                assert np.array_equal(np.array(got), np.array([lo[i], hi[i]]), equal_nan=True), (
                    expression, t_lo[i], t_hi[i], got, lo[i], hi[i])
