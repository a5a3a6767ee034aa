"""The floating-point layer: its reference, its verdicts, the registry's implementations
and the naive ones it must refute.  References here are independent mpmath evaluations
of closed forms (expm1, log1p) at 4000 bits, not the layer's own Reference."""
import json
import math
import subprocess
import sys

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.errors import InvalidArgument

from estimators import Estimator, registry
from verify import UsageError
from verify.claims import DTYPES, FLOATING
from verify.floating import DTYPE_INFO, Reference, check_callable, check_claims, fp_results_for_report, ulp
from verify.strategies import log_prob_pairs, numpy_dtype, round_to_dtype
from verify.targets import resolve

REFERENCE_BITS = 4000  # far beyond any cancellation of float64 inputs (t >= 2**-1074)
WITH_NUMERIC = sorted(name for name, e in registry().items() if e.numeric is not None)


def k3_closed_form(logp, logq):
    with mpmath.workprec(REFERENCE_BITS):
        t = mpmath.mpf(logp) - mpmath.mpf(logq)
        return mpmath.expm1(t) - t


@pytest.mark.parametrize("logp, logq", [(-1e-300, 0.0), (-5e-324, 0.0), (-1.0, -1.0 + 2 ** -40), (0.0, -60.0),
                                        (-60.0, 0.0), (-30.5, -30.25)])
def test_reference_survives_cancellation(logp, logq):
    exact = k3_closed_form(logp, logq)
    value = Reference("(r - 1) - log(r)").at(logp, logq)
    assert abs(value - exact) <= mpmath.mpf(2) ** -70 * abs(exact)


def test_reference_is_none_where_f_is_undefined():
    assert Reference("1/(r - 1)").at(-1.0, -1.0) is None


def test_round_to_bfloat16_rounds_once():
    # 1 + 2**-8 is the tie between bfloat16 neighbours 1 and 1 + 2**-7; anything above
    # it must round up (through float32 it would round to the tie, then to even: 1).
    above_tie = np.array([1 + 2 ** -8 + 2 ** -30, -(1 + 2 ** -8 + 2 ** -40)])
    rounded = round_to_dtype(above_tie, "bfloat16").astype(np.float64)
    assert rounded.tolist() == [1 + 2 ** -7, -(1 + 2 ** -7)]
    exact_tie = round_to_dtype(np.array([1 + 2 ** -8]), "bfloat16").astype(np.float64)
    assert exact_tie.tolist() == [1.0]


def test_ulp_matches_numpy_spacing():
    for name in ("float64", "float32", "float16"):
        np_dtype = numpy_dtype(name)
        for x in (1.0, 3.0, 1e-5, 60.0):
            assert ulp(mpmath.mpf(float(np_dtype.type(x))), DTYPE_INFO[name]) == float(np.spacing(np_dtype.type(x)))
    assert ulp(mpmath.mpf(0), DTYPE_INFO["float16"]) == 2.0 ** -24
    assert ulp(mpmath.mpf(1), DTYPE_INFO["bfloat16"]) == 2.0 ** -7


@pytest.mark.parametrize("name", WITH_NUMERIC)
def test_registry_holds_its_declared_fp_claims(name):
    estimator = registry()[name]
    declared = [c for c in estimator.claims if c.split("@")[0] in FLOATING]
    if estimator.usage is None:  # catalog entries declare only what the library's arithmetic keeps
        assert {"fp_finite", "fp_accurate", "fp_matches_expression"} <= set(declared)
    verdicts = check_claims(estimator, [c if "@" in c else f"{c}@{d}" for c in declared
                                        for d in ([None] if "@" in c else DTYPES)], profile="dev")
    bad = {c: v for c, v in verdicts.items() if v.verdict != "tested"}
    assert not bad, bad


def _recheck(estimator, counterexample):
    dtype = numpy_dtype(counterexample["dtype"])
    logp = np.array([counterexample["logp"]]).astype(dtype)
    logq = np.array([counterexample["logq"]]).astype(dtype)
    assert float(logp[0]) == counterexample["logp"] and float(logq[0]) == counterexample["logq"]
    with np.errstate(all="ignore"):
        return float(np.asarray(estimator.numeric(logp, logq)).astype(np.float64)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["k4_blog", "k3_exp"])
def test_naive_implementations_are_refuted_with_rechecking_counterexamples(name, dtype):
    estimator = resolve(f"examples/naive.py:{name}")
    verdicts = check_claims(estimator, [f"fp_nonnegative@{dtype}", f"fp_accurate@{dtype}"], profile="dev")
    for claim, verdict in verdicts.items():
        assert verdict.verdict == "refuted", (claim, verdict)
        example = verdict.counterexample
        assert set(example) == {"logp", "logq", "dtype", "value", "exact"}
        value = _recheck(estimator, example)
        assert json.dumps(value if math.isfinite(value) else repr(value)) == json.dumps(example["value"])
        if claim.startswith("fp_nonnegative"):
            assert not value >= 0
        elif name == "k3_exp":
            exact = k3_closed_form(example["logp"], example["logq"])
            in_ulps = abs(mpmath.mpf(value) - exact) / ulp(exact, DTYPE_INFO[dtype]) if math.isfinite(value) else math.inf
            assert in_ulps > 4 and abs(mpmath.mpf(value) - exact) >= DTYPE_INFO[dtype].smallest_normal


def test_wrong_formula_fails_matches_expression():
    def k2_called_k3(logp, logq):
        t = np.asarray(logp, np.float64) - np.asarray(logq, np.float64)
        return (t * t / 2).astype(np.asarray(logp).dtype)

    verdicts = check_callable(k2_called_k3, "(r - 1) - log(r)", claims=["fp_matches_expression"],
                              dtypes=["float32"], profile="dev")
    assert verdicts["fp_matches_expression@float32"].verdict == "refuted"


def test_dtype_changing_or_raising_implementation_is_undecided_not_proved():
    def broken(logp, logq):
        raise RuntimeError("boom")

    verdicts = check_callable(broken, "-log(r)", claims=["fp_finite"], dtypes=["float16"], profile="dev")
    assert verdicts["fp_finite@float16"].verdict == "undecided"


def test_bad_input_is_a_usage_error():
    estimator = registry()["k3"]
    with pytest.raises(UsageError):
        check_claims(estimator, ["fp_finite@float32"], profile="nightly")
    with pytest.raises(UsageError):
        check_claims(estimator, ["nonnegative"], profile="ci")
    with pytest.raises(UsageError):
        check_claims(Estimator(name="x", expr="r"), ["fp_finite@float32"], profile="ci")


def test_report_data_is_plain_and_deterministic():
    estimator = registry()["k1"]
    first = fp_results_for_report(estimator, "ci", dtypes=["float16"])
    second = fp_results_for_report(estimator, "ci", dtypes=["float16"])
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    entry = first["dtypes"]["float16"]
    assert entry["claims"]["fp_nonnegative"]["verdict"] == "refuted"
    assert entry["inputs"]["grid"] > 1000 and entry["inputs"]["hypothesis"] > 100
    assert entry["worst_error_ulps"] <= 0.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_strategy_values_are_exact_and_in_domain(dtype):
    np_dtype = numpy_dtype(dtype)

    @settings(max_examples=150, derandomize=True, database=None)
    @given(log_prob_pairs(dtype=dtype))
    def check(pair):
        for value in pair:
            assert -60.0 <= value <= 0.0
            assert float(np.array([value]).astype(np_dtype).astype(np.float64)[0]) == value

    check()


@pytest.mark.parametrize("kwargs", [dict(dtype="float8"), dict(low=0.0, high=-1.0), dict(low=-0.1, dtype="float16"),
                                    dict(high=math.inf), dict(hard_regions="yes")])
def test_strategy_checks_arguments_when_built(kwargs):
    with pytest.raises(InvalidArgument):
        log_prob_pairs(**kwargs)


def _fuzz(*args):
    return subprocess.run([sys.executable, "-m", "verify", "fuzz", *args], capture_output=True, text=True, timeout=120)


def test_fuzz_cli_exit_codes():
    assert _fuzz("k2", "--dtypes", "float16", "--profile", "dev").returncode == 0
    refuted = _fuzz("examples/naive.py:k3_exp", "--dtypes", "bfloat16", "--profile", "dev", "--json")
    assert refuted.returncode == 1
    assert json.loads(refuted.stdout)["estimators"]["k3_exp"]["fp_nonnegative@bfloat16"]["verdict"] == "refuted"
    bad = _fuzz("k2", "--dtypes", "float8")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_reference_converges_where_low_precision_gives_zero():
    """k3 at a tiny log ratio is 0 at 128 and 256 bits; the reference must still find
    t**2/2 (it once compared 8192 bits with the zero and gave up)."""
    import mpmath
    from verify.floating import Reference

    t = mpmath.mpf(-2.802596928649634e-45)
    with mpmath.workprec(400):
        expected = t**2 / 2 + t**3 / 6  # the series of exp(t) - 1 - t; next term ~1e-180 relative
    value = Reference("(r - 1) - log(r)").at_log_ratio(t)
    assert value is not None and abs(value - expected) <= abs(expected) * mpmath.mpf(2) ** -80
