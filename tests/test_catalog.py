"""The catalog of RL libraries' KL terms: the entries, their usage data, and
their gradients as the libraries use them.

The library gradients are checked against an independent oracle: finite differences, in
mpmath, of each library's loss written out here from its description (weights, detaches,
clamps, straight-through), summed over a softmax's outcomes, at the pairs of
verify.layers.gradients.  The "Done when" list of the issue is one test each.
"""
from __future__ import annotations

import functools

import mpmath
import numpy as np
import pytest
import sympy as sp

from estimators import Estimator, Usage, registry
from finite_differences import central_difference
from verify.errors import UsageError
from verify.layers import gradients
from verify.layers.gradients.nonseparable import general_gradient
from verify.layers.gradients.usage import library_gradients
from verify.cli import main
from verify.core.expression import RATIO, as_expression

REGISTRY = registry()
CATALOG = sorted(name for name, e in REGISTRY.items() if e.usage is not None)
REQUIRED = (
    "verl_k1", "verl_abs", "verl_k2", "verl_low_var_kl", "verl_low_var_kl_plus", "openrlhf_k1", "openrlhf_k2",
    "openrlhf_k3", "trl_grpo_k3", "trl_grpo_k3_is", "trl_grpo_k3_is_sequence", "trl_ppo_k1", "trl_ppo_k3",
    "slime_k3", "slime_low_var_kl", "slime_k3_is", "slime_low_var_kl_is", "nemo_rl_k1", "nemo_rl_k2", "nemo_rl_k3",
    "roll_k3", "roll_full", "skyrl_k3", "areal_k1", "deepspeed_chat_k1", "nemo_aligner_abs",
)
PAIRS = {(p.family, p.regime): p for p in gradients.PAIRS}
# finite differences in mpmath: step 1e-12 at 40 digits leaves ~25 correct digits
FD_DPS, FD_STEP, FD_ATOL = 40, mpmath.mpf("1e-12"), 1e-15


@functools.lru_cache(maxsize=None)
def library_rows(name):
    """{(mode, family, regime): GradientResult} of one entry as its library uses it."""
    return {(r.mode, r.family, r.regime): r for r in gradients.gradient_details(REGISTRY[name])}


# ---------------------------------------------------------------------- the entries

def test_every_required_entry_is_registered_with_its_usage():
    for name in REQUIRED:
        assert name in REGISTRY, name
        usage = REGISTRY[name].usage
        assert isinstance(usage, Usage), name
        assert name.startswith(usage.library + "_"), (name, usage.library)
        assert REGISTRY[name].source and "\n" not in REGISTRY[name].source


def test_the_idealised_library_names_are_gone():
    """abs and k3_clamped were named after library options but computed in float64 inside."""
    assert "abs" not in REGISTRY and "k3_clamped" not in REGISTRY


@pytest.mark.parametrize("library, default_for, name", [
    ("verl", "loss", "verl_low_var_kl"), ("verl", "reward", "verl_k1"), ("openrlhf", "reward", "openrlhf_k1"),
    ("nemo_rl", "loss", "nemo_rl_k3"), ("skyrl", "loss", "skyrl_k3"), ("trl", "reward", "trl_ppo_k1"),
    ("areal", "reward", "areal_k1"), ("nemo_aligner", "reward", "nemo_aligner_abs"), ("slime", "loss", "slime_k1"),
])
def test_defaults_are_marked_once_per_library_and_use(library, default_for, name):
    marked = [n for n in CATALOG if REGISTRY[n].usage.library == library and default_for in REGISTRY[n].usage.default_for]
    assert marked == [name]


def test_usage_rejects_inconsistent_data():
    with pytest.raises(ValueError):
        Usage("x", "y", kinds=("bonus",))
    with pytest.raises(ValueError):
        Usage("x", "y", kinds=("loss",), default_for=("reward",))
    with pytest.raises(ValueError):
        Usage("x", "y", weight="detached")
    with pytest.raises(ValueError):
        Usage("x", "y", weight_clamp=(-10.0, 10.0))
    with pytest.raises(ValueError):
        Estimator(name="no_function", expr=None)


@pytest.mark.parametrize("name", [n for n in CATALOG if REGISTRY[n].numeric is not None])
def test_implementations_compute_in_the_library_dtype(name):
    """float32-casting libraries return float32 for every input dtype; the others the input's."""
    import ml_dtypes

    estimator = REGISTRY[name]
    for dtype in (np.float64, np.float32, np.float16, ml_dtypes.bfloat16):
        logp, logq = np.array([-1.5, -0.25, -7.0], dtype=dtype), np.array([-0.5, -3.0, -7.0], dtype=dtype)
        out = np.asarray(estimator.numeric(logp, logq))
        expected = np.float32 if estimator.usage.computes_in == "float32" else dtype
        assert out.dtype == np.dtype(expected), (name, dtype, out.dtype)
        assert out.shape == logp.shape


@pytest.mark.parametrize("name", [n for n in CATALOG if REGISTRY[n].numeric is not None])
def test_implementations_compute_their_value_function_in_float64(name):
    """Inputs of float64 (no cast) or exactly representable in float32: the value is f(r)
    to the working precision (an error of the formula, not of rounding, would show)."""
    estimator = REGISTRY[name]
    f = sp.lambdify(RATIO, as_expression(estimator.expr), "mpmath")
    logp = np.array([-0.75, -2.5, -0.125, -30.0, -1.0, -13.0])
    logq = np.array([-1.25, -0.5, -0.126953125, -0.5, -1.0, -1.0])
    values = np.asarray(estimator.numeric(logp, logq), dtype=np.float64)
    with mpmath.workdps(40):
        exact = [float(f(mpmath.exp(mpmath.mpf(a) - mpmath.mpf(b)))) for a, b in zip(logp, logq)]
    tolerance = 1e-5 if estimator.usage.computes_in == "float32" else 1e-12
    np.testing.assert_allclose(values, exact, rtol=tolerance, atol=tolerance)


def test_low_precision_findings_are_kept():
    """verl's low_var_kl in bfloat16 goes negative near r = 1 (exp(t) rounds to 1); the
    float32 cast of OpenRLHF does not have that in bfloat16 inputs' ulps."""
    import ml_dtypes

    # log r = 0.00197: exp rounds to 1, 1 - 0.00197 rounds to 1 - 2^-8, minus 1: -2^-8
    logp = np.array([0.0], dtype=ml_dtypes.bfloat16)
    logq = np.array([-0.00196838], dtype=ml_dtypes.bfloat16)
    assert float(REGISTRY["verl_low_var_kl"].numeric(logp, logq)[0]) == -2.0 ** -8
    assert float(REGISTRY["openrlhf_k3"].numeric(logp, logq)[0]) >= 0


# ------------------------------------------------------------------- library modes

def test_library_modes_by_kind():
    assert [m.name for m in gradients.library_modes(REGISTRY["verl_low_var_kl"])] == \
        ["loss", "loss_offpolicy", "reward"]
    assert [m.name for m in gradients.library_modes(REGISTRY["trl_ppo_k1"])] == ["reward"]
    assert [m.name for m in gradients.library_modes(REGISTRY["trl_grpo_k3_is"])] == ["loss", "loss_offpolicy"]
    with pytest.raises(UsageError):
        gradients.gradient_table(REGISTRY["trl_ppo_k1"], ["loss"])
    with pytest.raises(UsageError):
        gradients.library_modes(REGISTRY["k3"])
    with pytest.raises(UsageError):
        gradients.gradient_table(REGISTRY["roll_full"], ["loss"], as_used=False)


def _f(expr_text):
    expr = as_expression(expr_text)
    return sp.lambdify(RATIO, expr, "mpmath")


def _softmax_log(logits):
    total = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in logits))
    return [v - total for v in logits]


def _library_objective(estimator, mode, pair):
    """The library's training objective as a function of theta, written from its usage:
    sum over outcomes x of sampler(x) * loss_x(theta), detaches as constants at theta0."""
    usage = estimator.usage
    theta0 = [mpmath.mpf(v) for v in pair.theta]
    logp = _softmax_log([mpmath.mpf(v) for v in pair.p])
    logq0 = _softmax_log(theta0)
    logold = _softmax_log([mpmath.mpf(v) for v in pair.theta_old])
    off = mode == "loss_offpolicy"
    sampler = logold if off else logq0
    old = logold if off else logq0  # q_old: the policy that generated the samples
    f = None if estimator.expr is None else _f(estimator.expr)

    def k2(t):
        return t * t / 2

    def objective(theta):
        logq = _softmax_log(theta)
        if usage.full_vocabulary:
            return mpmath.fsum(mpmath.exp(a) * (a - b) for a, b in zip(logq, logp))
        total = []
        for x in range(len(theta)):
            t, t0 = logp[x] - logq[x], logp[x] - logq0[x]
            if mode == "reward":
                value = f(mpmath.exp(t0)) * logq[x]  # REINFORCE: value detached
            elif usage.straight_through:
                value = f(mpmath.exp(t0)) + k2(t) - k2(t0)
            elif usage.weight == "none":
                value = f(mpmath.exp(t))
            else:
                if usage.weight == "ratio":
                    weight = mpmath.exp(logq[x] - old[x])
                else:  # exp(logp - logp.detach())
                    weight = mpmath.exp(logq[x] - logq0[x])
                if usage.weight_detached_beyond is not None and abs(t0) > usage.weight_detached_beyond:
                    weight = mpmath.exp(logq0[x] - logq0[x]) if usage.weight == "self_ratio" else \
                        mpmath.exp(logq0[x] - old[x])
                if usage.weight_clamp is not None:
                    low, high = usage.weight_clamp
                    value = min(max(weight * _f(usage.weighted_expr)(mpmath.exp(t)), low), high)
                else:
                    value = weight * f(mpmath.exp(t))
            total.append(mpmath.exp(sampler[x]) * value)
        return mpmath.fsum(total)

    return objective, theta0


def _finite_difference(objective, theta0):
    return central_difference(objective, theta0, FD_STEP)


CASES = [(name, mode.name, regime) for name in CATALOG for mode in gradients.library_modes(REGISTRY[name])
         for regime in ("near", "far")]


@pytest.mark.parametrize("name, mode, regime", CASES, ids=[f"{n}-{m}-{r}" for n, m, r in CASES])
def test_library_gradient_matches_finite_differences_of_its_loss(name, mode, regime):
    estimator = REGISTRY[name]
    pair = PAIRS[("softmax", regime)]
    result = library_rows(name)[(mode, "softmax", regime)]
    with mpmath.workdps(FD_DPS):
        objective, theta0 = _library_objective(estimator, mode, pair)
        reference = _finite_difference(objective, theta0)
    assert np.linalg.norm(np.array(result.gradient) - reference) <= result.error + FD_ATOL, (
        result.gradient, reference, result.error)


def test_general_path_on_a_separable_weight_agrees_with_the_engine():
    """The mpmath path (a weight inside a clamp) and the tanh-sinh engine agree where
    both apply: slime_k3_is off-policy on the far normal pair."""
    mode = next(m for m in gradients.library_modes(REGISTRY["slime_k3_is"]) if m.name == "loss_offpolicy")
    pair = PAIRS[("normal", "far")]
    general, general_error = general_gradient(mode, pair)
    engine, engine_error = library_gradients(mode, [pair])[0]
    assert np.linalg.norm(general - engine) <= general_error + engine_error


# ----------------------------------------------------------- the "Done when"

def _verdicts(name, mode, regimes=("near", "far"), families=("softmax", "normal")):
    rows = library_rows(name)
    return {(f, r): rows[(mode, f, r)].gradient_of for f in families for r in regimes}


def test_verl_low_var_kl_as_a_loss_follows_the_forward_kl_near():
    assert set(_verdicts("verl_low_var_kl", "loss", ("near",)).values()) == {"kl_pq"}
    # far, the [-10, 10] clamp removes the outcomes with log r > 2.61: neither KL
    assert set(_verdicts("verl_low_var_kl", "loss", ("far",)).values()) == {"biased"}


def test_verl_low_var_kl_plus_follows_the_reverse_kl():
    assert set(_verdicts("verl_low_var_kl_plus", "loss").values()) == {"kl_qp"}


def test_nemo_rl_k3_on_policy_reverse_kl_off_policy_biased():
    assert set(_verdicts("nemo_rl_k3", "loss", ("near",)).values()) == {"kl_qp"}
    assert set(_verdicts("nemo_rl_k3", "loss_offpolicy").values()) == {"biased"}
    # far on-policy the output clamp bites (k3 > 10 at log r > 2.61): not grad KL(q||p)
    assert set(_verdicts("nemo_rl_k3", "loss", ("far",)).values()) == {"biased"}


def test_trl_grpo_k3_is_follows_the_reverse_kl_on_and_off_policy():
    assert set(_verdicts("trl_grpo_k3_is", "loss").values()) == {"kl_qp"}
    assert set(_verdicts("trl_grpo_k3_is", "loss_offpolicy").values()) == {"kl_qp"}
    # without the weight, off-policy is biased
    assert set(_verdicts("trl_grpo_k3", "loss_offpolicy").values()) == {"biased"}


def test_openrlhf_k1_as_a_loss_has_zero_expected_gradient():
    verdicts = _verdicts("openrlhf_k1", "loss")
    assert {key: v for key, v in verdicts.items() if key != ("normal", "far")} == {
        ("softmax", "near"): "zero", ("softmax", "far"): "zero", ("normal", "near"): "zero"}
    # the far normal pair reaches log r > 10 in q's tails (|z| > 4.7): the clamp makes the
    # expected gradient -E_q[1{|log r| >= 10} score], tiny but not zero
    far = library_rows("openrlhf_k1")[("loss", "normal", "far")]
    assert far.gradient_of == "biased" and far.norm_ratio_kl_qp < 1e-4


def test_slime_low_var_kl_is_near_reverse_kl_biased_once_the_clamp_bites():
    rows = library_rows("slime_low_var_kl_is")
    assert rows[("loss", "softmax", "near")].gradient_of == "kl_qp"
    assert rows[("loss", "normal", "near")].gradient_of == "kl_qp"
    assert rows[("loss_offpolicy", "softmax", "near")].gradient_of == "kl_qp"
    # normal off-policy near: q_old is narrower, so w = q/q_old is unbounded and w k3 > 10
    # for |z| > 7 (q-mass ~1e-12): biased by a relative 1e-10, a real effect of the weight
    # inside the clamp, found by the exact computation
    near_off = rows[("loss_offpolicy", "normal", "near")]
    assert near_off.gradient_of == "biased"
    deviation = np.linalg.norm(np.array(near_off.gradient) - np.array(near_off.grad_kl_qp))
    assert deviation < 1e-9 * np.linalg.norm(near_off.grad_kl_qp)
    for mode in ("loss", "loss_offpolicy"):
        for family in ("softmax", "normal"):
            assert rows[(mode, family, "far")].gradient_of == "biased"


def test_roll_full_is_exactly_the_reverse_kl_gradient():
    assert set(_verdicts("roll_full", "loss").values()) == {"kl_qp"}
    assert set(_verdicts("roll_full", "loss_offpolicy").values()) == {"kl_qp"}


def test_k1_and_k3_in_the_reward():
    assert set(_verdicts("trl_ppo_k1", "reward").values()) == {"kl_qp"}
    assert set(_verdicts("trl_ppo_k3", "reward").values()) == {"biased"}


# ------------------------------------------------------------------------ CLI, report

def test_cli_reports_library_modes(capsys):
    assert main(["gradients", "trl_grpo_k3_is", "--json", "--no-cross-check"]) == 0
    import json

    payload = json.loads(capsys.readouterr().out)
    assert {r["mode"] for r in payload["results"]} == {"loss", "loss_offpolicy"}
    assert all("q_theta/q_old" in r["as_used"] and r["generic"] is False for r in payload["results"])


def test_library_sweep_runs_from_near_to_far():
    rows = [r for r in gradients.library_sweep(REGISTRY["verl_low_var_kl"]) if r["mode"] == "loss"]
    kls = [r["kl_qp"] for r in rows]
    assert kls == sorted(kls) and kls[0] < 1e-3 < 0.5 < kls[-1]
    assert rows[0]["gradient_of"] == "kl_pq" and rows[-1]["gradient_of"] == "biased"
    plus = [r for r in gradients.library_sweep(REGISTRY["verl_low_var_kl_plus"]) if r["mode"] == "loss"]
    assert all(r["cosine_kl_qp"] == 1.0 for r in plus)


def test_libraries_report_renders_deterministically():
    from verify.layers.gradients.libraries import library_data, library_task
    from verify.report.libraries import libraries_figure, render_libraries

    names = ["verl_low_var_kl", "trl_ppo_k1", "roll_full"]
    subset = {name: REGISTRY[name] for name in names}
    sweeps = {name: library_task(REGISTRY[name]) for name in names}
    results = {"profile": "ci", "estimators": {
        name: {"expression": None if REGISTRY[name].expr is None else str(as_expression(REGISTRY[name].expr)),
               "claims": {}, "gradients": [r.as_row() for r in library_rows(name).values()]} for name in names},
        **library_data(subset, sweeps)}
    text = render_libraries(results)
    assert text == render_libraries(results)
    assert "**default** (loss)" in text and "verl_low_var_kl" in text and "spurious" in text
    assert libraries_figure(results) == libraries_figure(results)


def test_exhaustive_16bit_sign_check():
    from verify.layers.gradients.libraries import nonnegative_16bit
    from verify.strategies import numpy_dtype

    low_var_kl = nonnegative_16bit(REGISTRY["verl_low_var_kl"])
    assert low_var_kl["bfloat16"]["verdict"] == "refuted"
    example = low_var_kl["bfloat16"]["counterexample"]
    dtype = numpy_dtype("bfloat16")
    value = REGISTRY["verl_low_var_kl"].numeric(np.array([example["logp"]], dtype=dtype),
                                                np.array([example["logq"]], dtype=dtype))
    assert float(value[0]) == example["value"] < 0  # the counterexample re-checks
    assert -60 <= example["logp"] <= 0 and -60 <= example["logq"] <= 0
    assert nonnegative_16bit(REGISTRY["verl_k2"]) == {
        name: {"verdict": "proved", "inputs": record["inputs"], "failures": 0}
        for name, record in nonnegative_16bit(REGISTRY["verl_k2"]).items()}
    assert nonnegative_16bit(REGISTRY["openrlhf_k3"]) == {"float16": None, "bfloat16": None}


@pytest.mark.parametrize("argv", [
    ["check", "roll_full"],
    ["moments", "roll_full", "--p", "norm(0, 1)", "--q", "norm(0.1, 1)"],
    ["gradients", "trl_ppo_k1", "--mode", "loss"],
    ["gradients", "roll_full", "--mode", "loss_is_weighted"],
])
def test_cli_bad_catalog_input_is_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kl-verify: error:") and err.count("\n") == 1


# ----------------------------------------------- the exact gradient of the backward claims

_KINK_FREE_T = [float(t) for t in np.linspace(-30.0, 30.0, 241) + 0.0123]


@pytest.mark.parametrize("name", sorted(n for n, e in REGISTRY.items()
                                        if e.numeric_grad is not None and "loss" in e.usage.kinds))
def test_backward_reference_is_the_library_loss_gradient(name):
    """The exact gradient the backward claims judge ``numeric_grad`` by (-d/dt of
    ``backward_expr``, else of ``expr``) equals the gradient layer's own derivation of the
    library's on-policy loss (the score coefficient of its ``loss`` mode at u = 0), at
    points away from the kinks: two derivations that share nothing but the registry."""
    from verify.layers.gradients.symbols import LOG_RATIO, LOG_WEIGHT

    entry = REGISTRY[name]
    t = sp.Symbol("t", real=True)
    reference = as_expression(entry.backward_expr or entry.expr).subs(RATIO, sp.exp(t))
    ours = sp.lambdify(t, -sp.diff(reference, t), modules="mpmath")
    loss = next(m for m in gradients.library_modes(entry) if m.name == "loss")
    theirs = sp.lambdify(LOG_RATIO, loss.coefficient.subs(LOG_WEIGHT, 0), modules="mpmath")
    with mpmath.workdps(30):
        for value in _KINK_FREE_T:
            a, b = ours(mpmath.mpf(value)), theirs(mpmath.mpf(value))
            assert abs(a - b) <= mpmath.mpf(10) ** -20 * (1 + abs(b)), (name, value, a, b)


def test_k3_clamp_constants_sit_where_the_roots_are():
    """No float64 lies between each 40-digit constant and the root of e^t - 1 - t = 10 it
    stands for, so the kink of GRAD_K3_OUT is where the true one is for every input."""
    from estimators import _claims

    with mpmath.workdps(60):
        for text, branch in ((_claims.K3_CLAMP_LOW, 0), (_claims.K3_CLAMP_HIGH, -1)):
            root = (-11 - mpmath.lambertw(-mpmath.exp(-11), branch)).real
            assert abs(mpmath.exp(root) - 1 - root - 10) < mpmath.mpf(10) ** -50
            constant = mpmath.mpf(text)
            low, high = sorted((constant, root))
            below = float(low)  # nearest double; the doubles around the pair must bracket both
            below = below if below <= low else float(np.nextafter(below, -np.inf))
            above = float(np.nextafter(below, np.inf))
            assert below <= low and high < above, (text, root)
