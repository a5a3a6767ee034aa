"""Tests of verify.layers.gradients: exact expected gradients as a loss or a reward.

References are computed here with mpmath, independently of the code under test:
finite differences of KL (exact sums and mpmath.quad), finite differences of each
mode's surrogate objective (its autograd semantics), and mpmath.quad of the expected
gradient built from the estimator's expression in r (not the t-rewrite the code uses).
"""
from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest
import sympy as sp

from estimators import registry
from finite_differences import central_difference
from verify.errors import UsageError
from verify.core.dtypes import EPS
from verify.layers import gradients
from verify.layers.gradients.compiled import compile_expression
from verify.layers.gradients.crosscheck import _CLAIM_CHECKS
from verify.layers.gradients.normal import _breakpoints
from verify.cli import main
from verify.core.expression import RATIO, as_expression

PAIRS = {(p.family, p.regime): p for p in gradients.PAIRS}
REGISTRY = registry()

# Finite differences in mpmath at FD_DPS digits with step FD_STEP: the central
# difference error is O(FD_STEP^2) ~ 1e-24 relative, the rounding error 1e-40 / FD_STEP.
FD_DPS, FD_STEP = 40, mpmath.mpf("1e-12")
# The FD reference of a gradient is trusted to this absolute error (quad at FD_DPS digits
# divided by 2 FD_STEP leaves about 25 digits; 1e-15 is far above that).
FD_ATOL = 1e-15


def _rows(target, modes=None, as_used=False):
    """Generic modes by default (catalog entries too): the library modes are tested in test_catalog.py."""
    return {(r["mode"], r["family"], r["regime"]): r for r in gradients.gradient_table(target, modes, as_used=as_used)}


FUNCTIONS_OF_R = sorted(name for name, e in REGISTRY.items() if e.expr is not None)


# ------------------------------------------------- grad KL by finite differences

def _softmax_log(logits):
    total = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in logits))
    return [v - total for v in logits]


def _softmax_kl(theta, p_logits):
    logq, logp = _softmax_log(theta), _softmax_log(p_logits)
    kl_qp = mpmath.fsum(mpmath.exp(a) * (a - b) for a, b in zip(logq, logp))
    kl_pq = mpmath.fsum(mpmath.exp(b) * (b - a) for a, b in zip(logq, logp))
    return kl_qp, kl_pq


def _normal_kl(theta, p):
    """KL(q||p), KL(p||q) by mpmath.quad of the defining integrals."""
    (m, s), (mp_, sp_) = theta, p

    def logpdf(x, loc, log_scale):
        return -((x - loc) / mpmath.exp(log_scale)) ** 2 / 2 - log_scale - mpmath.log(2 * mpmath.pi) / 2

    kl_qp = mpmath.quad(lambda x: mpmath.exp(logpdf(x, m, s)) * (logpdf(x, m, s) - logpdf(x, mp_, sp_)),
                        [-mpmath.inf, m, mpmath.inf])
    kl_pq = mpmath.quad(lambda x: mpmath.exp(logpdf(x, mp_, sp_)) * (logpdf(x, mp_, sp_) - logpdf(x, m, s)),
                        [-mpmath.inf, mp_, mpmath.inf])
    return kl_qp, kl_pq


@pytest.mark.parametrize("key", sorted(PAIRS), ids="/".join)
def test_grad_kl_matches_finite_differences(key):
    pair = PAIRS[key]
    grad_qp, grad_pq, error_qp, error_pq = gradients.reference_gradients(pair)
    kl = _softmax_kl if pair.family == "softmax" else _normal_kl
    with mpmath.workdps(FD_DPS):
        theta = [mpmath.mpf(v) for v in pair.theta]
        p = [mpmath.mpf(v) for v in pair.p]
        for i in range(len(theta)):
            up = list(theta)
            down = list(theta)
            up[i] += FD_STEP
            down[i] -= FD_STEP
            (qp_up, pq_up), (qp_down, pq_down) = kl(up, p), kl(down, p)
            fd_qp = float((qp_up - qp_down) / (2 * FD_STEP))
            fd_pq = float((pq_up - pq_down) / (2 * FD_STEP))
            assert abs(grad_qp[i] - fd_qp) <= error_qp + FD_ATOL, (key, i, grad_qp[i], fd_qp)
            assert abs(grad_pq[i] - fd_pq) <= error_pq + FD_ATOL, (key, i, grad_pq[i], fd_pq)
        assert float(kl(theta, p)[0]) == pytest.approx(gradients.kl_qp_value(pair), rel=1e-12)


# ---------------------------------------- modes: the autograd semantics, independently

def _surrogate_gradient(expr, mode_name, pair):
    """d/dtheta of the mode's surrogate objective, summed over the sampler, by FD in mpmath.

    loss:             sum_x s(x) f(p/q_theta)                        (s = q_theta0, fixed)
    reward:           sum_x s(x) f(p/q_theta0) log q_theta(x)
    loss_offpolicy:   sum_x q_old(x) f(p/q_theta)
    loss_is_weighted: sum_x q_old(x) (q_theta/q_old) f(p/q_theta)
    straight_through: sum_x s(x) [f(p/q_theta0) + k2(p/q_theta) - k2(p/q_theta0)]
    """
    f = sp.lambdify(RATIO, expr, "mpmath")

    def k2(r):
        return mpmath.log(r) ** 2 / 2

    theta0 = [mpmath.mpf(v) for v in pair.theta]
    logp = _softmax_log([mpmath.mpf(v) for v in pair.p])
    logq0 = _softmax_log(theta0)
    logold = _softmax_log([mpmath.mpf(v) for v in pair.theta_old])
    sampler = logold if mode_name in ("loss_offpolicy", "loss_is_weighted") else logq0

    def objective(theta):
        logq = _softmax_log(theta)
        total = mpmath.mpf(0)
        for x in range(len(theta)):
            r, r0 = mpmath.exp(logp[x] - logq[x]), mpmath.exp(logp[x] - logq0[x])
            if mode_name in ("loss", "loss_offpolicy"):
                value = f(r)
            elif mode_name == "reward":
                value = f(r0) * logq[x]
            elif mode_name == "loss_is_weighted":
                value = mpmath.exp(logq[x] - logold[x]) * f(r)
            else:
                value = f(r0) + k2(r) - k2(r0)
            total += mpmath.exp(sampler[x]) * value
        return total

    return central_difference(objective, theta0, FD_STEP)


@pytest.mark.parametrize("mode", gradients.MODE_NAMES)
@pytest.mark.parametrize("name", ["k3", "k4", "verl_low_var_kl"])
def test_modes_match_their_autograd_definition(name, mode):
    pair = PAIRS[("softmax", "far")]
    expr = as_expression(REGISTRY[name].expr)
    gradient, error = gradients.expected_gradient(REGISTRY[name], mode, "softmax", "far")
    with mpmath.workdps(FD_DPS):
        reference = _surrogate_gradient(expr, mode, pair)
    assert np.linalg.norm(gradient - reference) <= error + FD_ATOL, (gradient, reference)


# ------------------------------------------- quadrature error bounds vs mpmath.quad

def _normal_reference(expr, mode, pair, dps=25):
    """mpmath.quad of E_s[[w] ([f] + pathwise) score], built from f(r) and d/dr f."""
    f = sp.lambdify(RATIO, expr, "mpmath")
    fprime = sp.lambdify(RATIO, sp.diff(expr.rewrite(sp.Piecewise), RATIO), "mpmath")
    (m, s), (mp_, sp_) = pair.theta, pair.p
    sampler = pair.theta if mode.samples_from == "q_theta" else pair.theta_old
    kinks = compile_expression(expr).kinks + (0.0,)
    sigma = mpmath.exp(s)
    points = sorted(set(_breakpoints(pair, kinks, sampler[0])) | {m - float(sigma), m + float(sigma)})

    def logpdf(x, loc, log_scale):
        return -((x - loc) / mpmath.exp(log_scale)) ** 2 / 2 - log_scale - mpmath.log(2 * mpmath.pi) / 2

    def integrand(x, component):
        log_q, log_p = logpdf(x, m, s), logpdf(x, mp_, sp_)
        log_s = logpdf(x, *sampler)
        t = log_p - log_q
        r = mpmath.exp(t)
        c = f(r) if mode.value_score else 0
        if mode.pathwise == "estimator":
            c -= r * fprime(r)
        elif mode.pathwise == "k2":
            c -= t
        weight = mpmath.exp(log_q - log_s) if mode.importance_weight else 1
        z = (x - m) / sigma
        score = z / sigma if component == 0 else z * z - 1
        return mpmath.exp(log_s) * weight * c * score

    with mpmath.workdps(dps):
        return np.array([float(mpmath.quad(lambda x: integrand(x, k), [-mpmath.inf] + points + [mpmath.inf]))
                         for k in (0, 1)])


@pytest.mark.parametrize("name, mode, regime", [
    ("k3", "loss", "far"),
    ("k4", "loss", "near"),
    ("verl_low_var_kl", "loss", "far"),
    ("kl_pq", "reward", "far"),
    ("k2", "loss_offpolicy", "far"),
    ("k4", "loss_is_weighted", "far"),
    ("verl_abs", "loss", "near"),
])
def test_normal_quadrature_within_its_error_bound(name, mode, regime):
    expr = as_expression(REGISTRY[name].expr)
    gradient, error = gradients.expected_gradient(REGISTRY[name], mode, "normal", regime)
    reference = _normal_reference(expr, gradients.parse_modes([mode])[0], PAIRS[("normal", regime)])
    assert np.linalg.norm(gradient - reference) <= error, (gradient, reference, error)
    # the bound is small enough to separate every verdict of the sweep
    assert error <= 1e-8 * max(1.0, float(np.linalg.norm(reference)))


# ----------------------------------------------------------------- known results

KNOWN = [
    ("k1", "loss", "zero"),
    ("k2", "loss", "kl_qp"),
    ("k3", "loss", "kl_pq"),
    ("k1", "reward", "kl_qp"),
    ("k3", "reward", "biased"),
    ("k3", "loss_is_weighted", "kl_qp"),
    ("k1", "loss_is_weighted", "kl_qp"),
    ("kl_pq", "loss_is_weighted", "kl_pq"),
    ("k2", "loss_is_weighted", "biased"),
    ("k2", "loss_offpolicy", "biased"),
    ("k3", "loss_offpolicy", "biased"),
    ("verl_abs", "loss", "biased"),
]


@pytest.mark.parametrize("name, mode, expected", KNOWN, ids=lambda v: str(v))
def test_known_gradients_on_every_pair(name, mode, expected):
    rows = _rows(REGISTRY[name], [mode])
    assert len(rows) == len(gradients.PAIRS)
    for key, row in rows.items():
        assert row["gradient_of"] == expected, (key, row)


@pytest.mark.parametrize("name", FUNCTIONS_OF_R)
def test_straight_through_is_grad_kl_qp_for_every_estimator(name):
    for key, row in _rows(REGISTRY[name], ["straight_through"]).items():
        assert row["gradient_of"] == "kl_qp", (key, row)


def test_clamped_k3_is_biased_once_the_clamp_is_active():
    rows = _rows(REGISTRY["verl_low_var_kl"], ["loss"])
    # near: |log r| < 2.6 wherever q or p has mass above the error bound -> clamp inactive
    assert rows[("loss", "softmax", "near")]["gradient_of"] == "kl_pq"
    assert rows[("loss", "normal", "near")]["gradient_of"] == "kl_pq"
    # far: the clamp is active on an outcome / region with noticeable p-mass
    assert rows[("loss", "softmax", "far")]["gradient_of"] == "biased"
    assert rows[("loss", "normal", "far")]["gradient_of"] == "biased"
    kinks = compile_expression(as_expression(REGISTRY["verl_low_var_kl"].expr)).kinks
    assert kinks[2] == pytest.approx(2.6108686, abs=1e-6)


def test_k4_gradient_near_and_far():
    rows = _rows(REGISTRY["k4"], ["loss"])
    for family in ("softmax", "normal"):
        near = rows[("loss", family, "near")]
        # f''(1) = 2: near p = q the loss gradient is about twice grad KL(p||q), not equal
        assert near["gradient_of"] == "biased"
        assert near["cosine_kl_pq"] > 0.999
        assert 1.8 < near["norm_ratio_kl_pq"] < 2.4
        far = rows[("loss", family, "far")]
        assert far["gradient_of"] == "biased"
        assert far["norm_ratio_kl_qp"] < 0.7


def test_constant_multiples_are_recognised():
    for row in _rows("2*(r - 1 - log(r))", ["loss"]).values():
        assert row["gradient_of"] == "multiple_of_kl_pq"
        assert row["norm_ratio_kl_pq"] == pytest.approx(2.0, rel=1e-9)
    # E_q[(r - 1) grad log q] = E_p[grad log q] = -grad KL(p||q)
    for row in _rows("r - 1", ["reward"]).values():
        assert row["gradient_of"] == "multiple_of_kl_pq"
        assert row["cosine_kl_pq"] == pytest.approx(-1.0, abs=1e-9)
    for row in _rows("r - 1", ["loss"]).values():
        assert row["gradient_of"] == "kl_pq"


def test_rows_have_exactly_the_issue_keys_and_are_deterministic():
    first = gradients.gradient_table(REGISTRY["k4"])
    second = gradients.gradient_table(REGISTRY["k4"])
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert len(first) == len(gradients.MODES) * len(gradients.PAIRS)
    for row in first:
        assert tuple(sorted(row)) == tuple(sorted(gradients.ROW_KEYS))
        assert row["gradient_of"] in gradients.GRADIENT_OF
        assert row["regime"] in ("near", "far")
    kl = {(r["family"], r["regime"]): r["kl_qp"] for r in first}
    assert all(5e-4 < kl[(f, "near")] < 2e-3 and 0.5 < kl[(f, "far")] < 2 for f in ("softmax", "normal"))


def test_rf_prime_is_accurate_near_r_equal_one():
    compiled = compile_expression(as_expression(REGISTRY["k3"].expr))
    t = np.array([-1e-12, 1e-9, 3e-6])
    with mpmath.workdps(40):
        exact = [float(mpmath.expm1(mpmath.mpf(float(v)))) for v in t]
    np.testing.assert_allclose(compiled.dg_np(t), exact, rtol=4 * EPS, atol=0)


def test_divergent_expectations_are_undecided():
    with pytest.raises(gradients.GradientUndecided):
        gradients.gradient_table("exp(r)", ["loss"])
    with pytest.raises(gradients.GradientUndecided):  # E_q[r^2 score] diverges for the far normal pair
        gradients.gradient_table("r**2", ["loss"])


# --------------------------------------------------------- symbolic cross-check

def test_declared_gradient_claims_agree_with_the_exact_gradients():
    for name in FUNCTIONS_OF_R:
        estimator = REGISTRY[name]
        declared = {c: "proved" for c in estimator.claims if c in dict.fromkeys(_CLAIM_CHECKS)}
        rows = gradients.gradient_table(estimator, ["loss", "reward"], as_used=False)
        assert gradients.symbolic_disagreements(declared, rows) == [], name


def test_symbolic_disagreements_are_reported():
    rows = gradients.gradient_table(REGISTRY["k1"], ["loss", "reward"])
    consistent = {"loss_grad_zero": "proved", "reward_grad_kl_qp": "proved",
                  "loss_grad_kl_qp": "refuted", "loss_grad_kl_pq": "refuted"}
    assert gradients.symbolic_disagreements(consistent, rows) == []
    assert len(gradients.symbolic_disagreements({**consistent, "loss_grad_zero": "refuted"}, rows)) == 1
    assert len(gradients.symbolic_disagreements({**consistent, "loss_grad_kl_qp": "proved"}, rows)) == 1
    assert gradients.symbolic_disagreements({"loss_grad_kl_qp": "undecided"}, rows) == []
    # modes absent from the results are not checked
    loss_rows = gradients.gradient_table(REGISTRY["k1"], ["loss"])
    assert gradients.symbolic_disagreements({"reward_grad_kl_qp": "refuted"}, loss_rows) == []


# ------------------------------------------------------------------------ CLI

def test_cli_json_for_one_target(capsys):
    assert main(["gradients", "k2", "--mode", "loss", "--json", "--no-cross-check"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["estimator"] == "k2"
    assert [r["gradient_of"] for r in payload["results"]] == ["kl_qp"] * len(gradients.PAIRS)


def test_cli_text_table(capsys):
    assert main(["gradients", "-log(r)", "--mode", "loss,reward", "--no-cross-check"]) == 0
    out = capsys.readouterr().out
    assert "gradient_of" in out and "zero" in out and "kl_qp" in out


@pytest.mark.parametrize("argv", [
    ["gradients", "k1", "--mode", "bogus"],
    ["gradients", "no_such_estimator"],
    ["gradients", "k1", "--mode", ","],
])
def test_cli_bad_input_is_a_usage_error(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("kl-verify: error:")


def test_cli_undecided_exit_code(capsys):
    assert main(["gradients", "exp(r)", "--mode", "loss", "--no-cross-check"]) == 3
    assert "undecided" in capsys.readouterr().err


def test_parse_modes():
    assert gradients.parse_modes(None) == gradients.MODES
    assert [m.name for m in gradients.parse_modes(["reward", "loss"])] == ["loss", "reward"]
    with pytest.raises(UsageError):
        gradients.parse_modes(["nope"])
