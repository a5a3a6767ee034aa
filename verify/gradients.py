"""Exact expected gradients of KL estimators used as a loss or as a reward.

The policy is q = q_theta; p does not depend on theta (shared/CLAIMS.md).  For every
mode below the gradient of one sample x is a scalar coefficient times the score
grad_theta log q_theta(x), so the expected gradient is

    G = E_{x ~ s}[ coefficient(x) * grad_theta log q_theta(x) ]

with s the sampling distribution of the mode.  G is computed without sampling:

- ``softmax``: q_theta = softmax(theta) over V outcomes, theta = the V logits.  G is
  an exact sum, done in mpmath at two precisions; their difference (plus a floor of
  the higher precision) is the error bound.
- ``normal``: q_theta = N(loc, exp(log_scale)^2), theta = (loc, log_scale).  G is a
  tanh-sinh quadrature (scipy) on intervals split where log r crosses a kink of f
  (clamps, Abs), at log r = 0 and at the zeros of the score.  The integrand is assembled
  in log space (log density + log|coefficient| + log|score|), so the tails never form
  0 * inf; where the coefficient overflows float64 it is evaluated in mpmath.  The bound
  is QUAD_SAFETY times the quadrature's error estimate plus the integral of |integrand|
  times its relative evaluation error (measured error of g, g' against mpmath, and the
  rounding of the log densities).  A quadrature that does not converge raises
  :class:`GradientUndecided`: a finding, not a number.

All gradients are compared with grad KL(q_theta||p) and grad KL(p||q_theta) at the
current theta, also in the off-policy modes.  In ``loss_is_weighted`` the surrogate is
E_{q_old}[(q_theta/q_old) f(p/q_theta)] = E_{q_theta}[f(p/q_theta)] for every theta, so
its gradient is grad_theta E_{q_theta}[f]: for k1 and k3, unbiased for KL(q||p) at every
q, it is exactly grad KL(q_theta||p), whatever q_old (with q_old > 0 where q_theta > 0).

The references grad KL(q_theta||p) and grad KL(p||q_theta) are closed forms (checked
by finite differences in tests/test_gradients.py).  ``gradient_of`` claims equality
only when the difference is within the computed error bounds.

f and r f'(r) are evaluated as functions of t = log r: g(t) = f(exp(t)) and
g'(t) = r f'(r), rewritten with expm1/log1p (sympy.codegen) so that they stay accurate
near r = 1.  This layer never imports ``verify.symbolic``; the cross-check takes the
symbolic verdicts as plain data (:func:`symbolic_disagreements`).

Catalog entries (an ``Estimator`` with a ``usage``) are reported in their library's
modes (:func:`library_modes`): the score coefficient c(t, u), u = log(q_theta/q_old), is
derived symbolically from the loss the library builds (weights, detaches, a weight
inside a clamp, straight-through), then goes through the same engine (a function of t,
or exp(u) times one); a coefficient that is neither (slime's weight inside the clamp,
off-policy) is summed exactly (softmax) or integrated by mpmath.quad at two precisions
(normal), the bound being their difference plus QUAD_SAFETY times mpmath's estimate.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp
from scipy.integrate import tanhsinh
from scipy.optimize import brentq
from sympy.codegen.rewriting import optimize, optims_c99
from sympy.core.relational import Relational

from verify import UsageError
from verify.expression import R, as_expression

__all__ = [
    "Mode", "MODES", "MODE_NAMES", "Pair", "PAIRS", "GRADIENT_OF", "ROW_KEYS",
    "GradientUndecided", "GradientResult", "expected_gradient", "reference_gradients",
    "gradient_details", "gradient_table", "symbolic_disagreements", "parse_modes",
    "kl_qp_value", "kl_pq_value", "LibraryMode", "LIBRARY_MODE_NAMES", "library_modes", "library_sweep", "weight_description",
]

GRADIENT_OF = ("kl_qp", "kl_pq", "zero", "multiple_of_kl_qp", "multiple_of_kl_pq", "biased")
ROW_KEYS = ("mode", "family", "regime", "kl_qp", "gradient_of", "cosine_kl_qp", "cosine_kl_pq",
            "norm_ratio_kl_qp", "norm_ratio_kl_pq")

EPS = float(np.finfo(np.float64).eps)
# Exact sums: mpmath at two precisions; the difference estimates the error of the
# lower one (so over-estimates the error of the reported higher one).
DPS_LOW, DPS_HIGH = 30, 50
# Floor of the exact-sum error bound, relative to the sum of |terms|: far above the
# 50-digit rounding, far below any difference the verdicts must see.
EXACT_SUM_FLOOR = 1e-40
# Termination tolerances of tanh-sinh: the gradients are O(1e-2 .. 1); an absolute
# 1e-13 is 1e-11 relative at worst, far below the smallest bias the sweep must detect
# (about 1e-3 relative, near p = q).
QUAD_ATOL, QUAD_RTOL = 1e-15, 1e-14
QUAD_MAXLEVEL = 10
# scipy's tanh-sinh error estimate is heuristic (from successive levels): against
# 30-digit mpmath.quad it under-estimated by up to 20x on semi-infinite pieces, so it
# is multiplied by this factor (tests/test_gradients.py checks the bound against mpmath).
QUAD_SAFETY = 100.0
# The integrals of |integrand| only scale the evaluation-error bound: 1e-6 relative is plenty.
ABS_RTOL = 1e-6
# float64 rounding of the closed-form reference gradients (a few operations on O(1)
# numbers): a generous 64 ulps relative to the magnitude of the terms.
CLOSED_FORM_REL = 64 * EPS
# Rounding of the converted float64 results and of the summation of quadrature pieces.
ROUNDING_REL = 16 * EPS
# The evaluation error of g and g' is measured against mpmath on T_CHECK; the budget is
# this factor times the worst relative error seen (and at least EVAL_REL_FLOOR).
EVAL_SAFETY, EVAL_REL_FLOOR = 8.0, 4 * EPS
# Relative errors are measured against max(|exact|, EVAL_SCALE_FLOOR): below that the
# coefficient is negligible next to the O(1e-2) coefficients that make the gradient.
EVAL_SCALE_FLOOR = 1e-8
# Kinks of f (clamps, Abs) are searched in t = log r on this grid, then refined.
KINK_GRID = np.linspace(-60.0, 60.0, 24001)
# The integrand exp(log density + log|coefficient| + log|score|) is computed from logs
# whose float64 rounding is a few ulps of their magnitude; a coefficient growing like r^k
# turns an error in log r into k times that relative error.  64 ulps per unit of
# (1 + |log q| + |log p| + |log density|) covers k <= 4 with a wide margin (the
# mpmath.quad references of tests/test_gradients.py check the bound).
LOG_ROUNDING_ULPS = 64
# Growth probe: |f| or |r f'| above exp(GROWTH_LOG_LIMIT) at |log r| = GROWTH_PROBE_T means
# super-exponential growth in log r (r^k with k <= 1000 stays below): no Gaussian expectation
# can be bounded, and mpmath could exhaust memory in the tails, so the result is undecided.
GROWTH_PROBE_T, GROWTH_LOG_LIMIT = 50.0, 1e5


class GradientUndecided(RuntimeError):
    """An expected gradient could not be computed to a trustworthy error bound."""


# ----------------------------------------------------------------------------- modes

@dataclass(frozen=True)
class Mode:
    """How an estimator value enters training, as data.

    The gradient of one sample x ~ ``samples_from`` is
    ``[w] * ([f(r)] + pathwise) * grad log q_theta(x)`` where w = q_theta/q_old if
    ``importance_weight``, f(r) is present if ``value_score`` (REINFORCE with the value
    detached, or the gradient through the weight w), and ``pathwise`` is autograd
    through r = p/q_theta inside the estimator: ``"estimator"`` gives -r f'(r),
    ``"k2"`` gives -r k2'(r) = -log r, ``"none"`` gives 0.
    """

    name: str
    samples_from: str  # "q_theta" or "q_old"
    importance_weight: bool
    value_score: bool
    pathwise: str  # "estimator", "k2" or "none"
    description: str


MODES = (
    Mode("loss", "q_theta", False, False, "estimator",
         "on-policy, x ~ q_theta, autograd through log q_theta(x): -r f'(r) grad log q"),
    Mode("reward", "q_theta", False, True, "none",
         "value detached, REINFORCE: f(r) grad log q"),
    Mode("loss_offpolicy", "q_old", False, False, "estimator",
         "x ~ q_old, no importance weight, autograd through log q_theta (GRPO's KL term)"),
    Mode("loss_is_weighted", "q_old", True, True, "estimator",
         "x ~ q_old, value w f(r) with w = q_theta/q_old, autograd through w and f"),
    Mode("straight_through", "q_theta", False, False, "k2",
         "on-policy, value of f, gradient of k2: -log r grad log q"),
)
MODE_NAMES = tuple(m.name for m in MODES)
_MODES_BY_NAME = {m.name: m for m in MODES}


def parse_modes(names) -> tuple[Mode, ...]:
    """Modes by name (None: all), in the order of MODES; UsageError on an unknown one."""
    if names is None:
        return MODES
    wanted = []
    for name in names:
        if name not in _MODES_BY_NAME:
            raise UsageError(f"unknown mode {name!r}; known: {', '.join(MODE_NAMES)}")
        wanted.append(name)
    if not wanted:
        raise UsageError("no mode given")
    return tuple(m for m in MODES if m.name in wanted)


# ----------------------------------------------------------------------------- pairs

@dataclass(frozen=True)
class Pair:
    """One fixed (q_theta, p) pair and the old policy q_old of the off-policy modes.

    softmax: ``theta``, ``p`` and ``theta_old`` are logits.  normal: (loc, log_scale).
    """

    family: str
    regime: str
    theta: tuple
    p: tuple
    theta_old: tuple
    note: str


_SOFTMAX_THETA = (1.2, 0.6, 0.1, -0.4, -1.0, -2.2)
# q_old: the logits shifted by 0.1 * (+1, -1, +1, ...): KL(q_old||q_theta) about 5e-3.
_SOFTMAX_OLD = tuple(v + 0.1 * (-1) ** i for i, v in enumerate(_SOFTMAX_THETA))
_NORMAL_THETA = (0.25, -0.1)
_NORMAL_SCALE = math.exp(_NORMAL_THETA[1])
# q_old: loc + 0.1 scale, log_scale - 0.05 (narrower, so that every off-policy
# integral of the sweep converges): KL(q_old||q_theta) about 7e-3.
_NORMAL_OLD = (_NORMAL_THETA[0] + 0.1 * _NORMAL_SCALE, _NORMAL_THETA[1] - 0.05)

PAIRS = (
    Pair("softmax", "near", _SOFTMAX_THETA,
         tuple(v + 0.05 * d for v, d in zip(_SOFTMAX_THETA, (1, -1, 0.5, -0.5, 0.8, -0.8))),
         _SOFTMAX_OLD, "V = 6; p logits = theta + 0.05 * (1, -1, .5, -.5, .8, -.8); KL(q||p) = 9.0e-4"),
    Pair("softmax", "far", _SOFTMAX_THETA, (0.2, 1.4, -0.6, 0.3, -1.2, 1.6), _SOFTMAX_OLD,
         "V = 6; KL(q||p) = 0.77; the last outcome has q = 0.015 and log r = 3.28 > 2.611, so "
         "k3 = 22 exceeds the clamp at 10 there and a clamped k3's gradient (verl_low_var_kl) vanishes on it"),
    Pair("normal", "near", _NORMAL_THETA,
         (_NORMAL_THETA[0] + 0.035 * _NORMAL_SCALE, _NORMAL_THETA[1] + 0.02), _NORMAL_OLD,
         "p = N(loc + 0.035 scale, (scale e^0.02)^2); KL(q||p) = 9.8e-4"),
    Pair("normal", "far", _NORMAL_THETA,
         (_NORMAL_THETA[0] + 2.5 * _NORMAL_SCALE, _NORMAL_THETA[1] + math.log(3.0)), _NORMAL_OLD,
         "p = N(loc + 2.5 scale, (3 scale)^2); KL(q||p) = 1.0; log r > 2.611 (k3 > 10: the clamp "
         "is active) for 0.36% of q's mass and 50% of p's, so a clamped k3's gradient (verl_low_var_kl) differs"),
)


def _pair(family, regime) -> Pair:
    for pair in PAIRS:
        if pair.family == family and pair.regime == regime:
            return pair
    raise UsageError(f"unknown family/regime {family!r}/{regime!r}")


# ------------------------------------------------------------ compiled estimators

T = sp.Symbol("t", real=True)


@dataclass(frozen=True)
class _Compiled:
    g_np: object  # t -> f(exp(t)), numpy
    dg_np: object  # t -> r f'(r), numpy
    g_mp: object
    dg_mp: object
    kinks: tuple  # values of t where f or f' may be non-smooth
    eval_rel: float  # relative evaluation error budget of g_np, dg_np


def _vectorized(function):
    def evaluate(t):
        t = np.asarray(t, dtype=np.float64)
        with np.errstate(all="ignore"):
            value = function(t)
        return np.broadcast_to(np.asarray(value, dtype=np.float64), t.shape).copy()
    return evaluate


def _find_kinks(g) -> tuple:
    """Zeros in t of every condition of the Piecewise form (sign changes on KINK_GRID)."""
    kinks = set()
    for relation in g.atoms(Relational):
        difference = relation.lhs - relation.rhs
        if not difference.has(T):
            continue
        h = sp.lambdify(T, difference, "numpy")
        with np.errstate(all="ignore"):
            values = np.broadcast_to(np.asarray(h(KINK_GRID), dtype=np.float64), KINK_GRID.shape)
        finite = np.isfinite(values)
        kinks.update(float(v) for v in KINK_GRID[finite & (values == 0)])
        signs = np.sign(values)
        change = np.nonzero(finite[:-1] & finite[1:] & (signs[:-1] * signs[1:] < 0))[0]
        for i in change:
            kinks.add(float(brentq(lambda x: float(h(x)), KINK_GRID[i], KINK_GRID[i + 1],
                                   xtol=1e-15, rtol=4 * EPS)))
    return tuple(sorted(kinks))


_T_CHECK = np.concatenate([
    -np.logspace(-10, np.log10(40.0), 120), [0.0], np.logspace(-10, np.log10(40.0), 120)])


def _measured_eval_error(g_np, dg_np, g_mp, dg_mp) -> float:
    worst = 0.0
    with mpmath.workdps(DPS_LOW):
        for numeric, exact in ((g_np, g_mp), (dg_np, dg_mp)):
            values = numeric(_T_CHECK)
            for t, value in zip(_T_CHECK, values):
                reference = float(exact(mpmath.mpf(float(t))))
                if not (math.isfinite(reference) and math.isfinite(value)):
                    continue  # overflow points are evaluated in mpmath in the integrand
                scale = max(abs(reference), EVAL_SCALE_FLOOR)
                worst = max(worst, abs(value - reference) / scale)
    return max(EVAL_REL_FLOOR, EVAL_SAFETY * worst)


def _in_log_ratio(expr: sp.Expr) -> sp.Expr:
    """g(t) = f(exp(t)), with clamps and Abs as Piecewise (so that it can be differentiated)."""
    piecewise = expr.rewrite(sp.Piecewise) if expr.has(sp.Min, sp.Max, sp.Abs) else expr
    g = piecewise.xreplace({R: sp.exp(T)})
    return g.subs(sp.log(sp.exp(T)), T)


@functools.lru_cache(maxsize=64)
def _compile(expr: sp.Expr) -> _Compiled:
    return _compile_in_t(_in_log_ratio(expr), expr)


@functools.lru_cache(maxsize=128)
def _compile_in_t(g: sp.Expr, label, with_derivative=True) -> _Compiled:
    """Compile g(t) (and its derivative) for the engine; ``label`` names it in messages.
    Without the derivative (modes with no pathwise term) dg is 0."""
    expr = label
    dg = sp.diff(g, T) if with_derivative else sp.Integer(0)
    if dg.has(sp.Derivative, sp.Subs):
        raise UsageError(f"cannot differentiate {expr}")
    # piecewise_fold first, so that exp(t) - 1 inside a clamp becomes expm1(t)
    g_np = _vectorized(sp.lambdify(T, optimize(sp.piecewise_fold(g), optims_c99), "numpy"))
    dg_np = _vectorized(sp.lambdify(T, optimize(sp.piecewise_fold(dg), optims_c99), "numpy"))
    g_mp0, dg_mp0 = sp.lambdify(T, g, "mpmath"), sp.lambdify(T, dg, "mpmath")

    def g_mp(t):
        return mpmath.mpf(g_mp0(t))

    def dg_mp(t):
        return mpmath.mpf(dg_mp0(t))

    _check_growth(expr, g_mp, dg_mp)
    return _Compiled(g_np, dg_np, g_mp, dg_mp, _find_kinks(g),
                     _measured_eval_error(g_np, dg_np, g_mp, dg_mp))


def _check_growth(expr, g_mp, dg_mp):
    with mpmath.workdps(DPS_LOW):
        for t in (-GROWTH_PROBE_T, GROWTH_PROBE_T):
            for function in (g_mp, dg_mp):
                try:
                    value = abs(function(mpmath.mpf(t)))
                    too_big = value != 0 and mpmath.log(value) > GROWTH_LOG_LIMIT
                except (MemoryError, OverflowError, ValueError, ZeroDivisionError):
                    too_big = True
                if too_big:
                    raise GradientUndecided(
                        f"{expr} grows faster than exponentially in log r (|f| or |r f'| > "
                        f"exp({GROWTH_LOG_LIMIT:g}) at log r = {t:g}): its expected gradients are not bounded")


def _coefficient_mp(compiled, mode, t):
    """The mode's coefficient without the weight, in mpmath: [f] + pathwise."""
    value = compiled.g_mp(t) if mode.value_score else mpmath.mpf(0)
    if mode.pathwise == "estimator":
        value -= compiled.dg_mp(t)
    elif mode.pathwise == "k2":
        value -= t
    return value


# --------------------------------------------------------------------- references

def _softmax_log(logits):
    top = max(logits)
    total = mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in logits)) + top
    return [v - total for v in logits]


def _kl(first, second, family) -> float:
    """KL(a||b) for a = first, b = second: softmax logits (exact sum at DPS_HIGH) or
    normal (loc, log scale) parameters (closed form)."""
    if family == "softmax":
        with mpmath.workdps(DPS_HIGH):
            log_a = _softmax_log([mpmath.mpf(v) for v in first])
            log_b = _softmax_log([mpmath.mpf(v) for v in second])
            return float(mpmath.fsum(mpmath.exp(a) * (a - b) for a, b in zip(log_a, log_b)))
    (loc_a, log_scale_a), (loc_b, log_scale_b) = first, second
    return (log_scale_b - log_scale_a
            + (math.exp(2 * log_scale_a) + (loc_a - loc_b) ** 2) / (2 * math.exp(2 * log_scale_b)) - 0.5)


def kl_qp_value(pair: Pair) -> float:
    """KL(q_theta||p) of a pair (closed form or exact sum)."""
    return _kl(pair.theta, pair.p, pair.family)


def kl_pq_value(pair: Pair) -> float:
    """KL(p||q_theta) of a pair."""
    return _kl(pair.p, pair.theta, pair.family)


def reference_gradients(pair: Pair):
    """(grad KL(q_theta||p), grad KL(p||q_theta), error bound of each) at theta."""
    if pair.family == "softmax":
        with mpmath.workdps(DPS_HIGH):
            logq = _softmax_log([mpmath.mpf(v) for v in pair.theta])
            logp = _softmax_log([mpmath.mpf(v) for v in pair.p])
            q = [mpmath.exp(v) for v in logq]
            p = [mpmath.exp(v) for v in logp]
            kl = mpmath.fsum(qi * (a - b) for qi, a, b in zip(q, logq, logp))
            grad_qp = np.array([float(qi * (a - b - kl)) for qi, a, b in zip(q, logq, logp)])
            grad_pq = np.array([float(qi - pi) for qi, pi in zip(q, p)])
        return grad_qp, grad_pq, ROUNDING_REL * np.linalg.norm(grad_qp), ROUNDING_REL * np.linalg.norm(grad_pq)
    (m, s), (mp_, sp_) = pair.theta, pair.p
    sigma2, sigma_p2, shift = math.exp(2 * s), math.exp(2 * sp_), m - mp_
    grad_qp = np.array([shift / sigma_p2, sigma2 / sigma_p2 - 1.0])
    grad_pq = np.array([shift / sigma2, 1.0 - (sigma_p2 + shift ** 2) / sigma2])
    scale_qp = abs(shift) / sigma_p2 + sigma2 / sigma_p2 + 1.0
    scale_pq = abs(shift) / sigma2 + (sigma_p2 + shift ** 2) / sigma2 + 1.0
    return grad_qp, grad_pq, CLOSED_FORM_REL * scale_qp, CLOSED_FORM_REL * scale_pq


# ------------------------------------------------------------- softmax: exact sums

def _softmax_gradient_at(compiled, mode, pair, dps):
    with mpmath.workdps(dps):
        logq = _softmax_log([mpmath.mpf(v) for v in pair.theta])
        logp = _softmax_log([mpmath.mpf(v) for v in pair.p])
        logs = logq if mode.samples_from == "q_theta" else _softmax_log([mpmath.mpf(v) for v in pair.theta_old])
        q = [mpmath.exp(v) for v in logq]
        terms = []  # s(x) [w(x)] coefficient(x), per outcome x
        for a, b, c in zip(logq, logp, logs):
            log_weight = (a - c) if mode.importance_weight else mpmath.mpf(0)
            terms.append(mpmath.exp(c + log_weight) * _coefficient_mp(compiled, mode, b - a))
        total = mpmath.fsum(terms)
        # grad_theta_i log q(x) = [x = i] - q_i
        gradient = [terms[i] - q[i] * total for i in range(len(q))]
        scale = mpmath.fsum(abs(v) for v in terms) * 2
        return gradient, scale


def _softmax_gradient(compiled, mode, pair):
    high, scale = _softmax_gradient_at(compiled, mode, pair, DPS_HIGH)
    low, _ = _softmax_gradient_at(compiled, mode, pair, DPS_LOW)
    with mpmath.workdps(DPS_HIGH):
        difference = math.sqrt(float(mpmath.fsum((a - b) ** 2 for a, b in zip(high, low))))
        floor = float(scale) * EXACT_SUM_FLOOR
    gradient = np.array([float(v) for v in high])
    error = difference + floor + ROUNDING_REL * float(np.linalg.norm(gradient))
    return gradient, error


# --------------------------------------------------------------- normal: quadrature

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_normal(x, loc, scale):
    z = (x - loc) / scale
    return -0.5 * z * z - np.log(scale) - _LOG_SQRT_2PI


def _quadratic_log_ratio(theta, p):
    """t(x) = log p(x) - log q_theta(x) = A x^2 + B x + C."""
    (m, s), (mp_, sp_) = theta, p
    v, vp = math.exp(2 * s), math.exp(2 * sp_)
    return (1 / (2 * v) - 1 / (2 * vp), mp_ / vp - m / v, s - sp_ - mp_ ** 2 / (2 * vp) + m ** 2 / (2 * v))


def _breakpoints(pair, kinks, centre):
    a, b, c = _quadratic_log_ratio(pair.theta, pair.p)
    points = {float(centre)}
    for kink in kinks:
        c0 = c - kink
        if abs(a) <= 1e-300:
            if b != 0:
                points.add(-c0 / b)
            continue
        disc = b * b - 4 * a * c0
        if disc <= 0:
            continue
        root = -(b + math.copysign(math.sqrt(disc), b)) / 2
        for x in (root / a, c0 / root if root != 0 else None):
            if x is not None and math.isfinite(x):
                points.add(x)
    return sorted(points)


def _normal_rows(compiled, jobs):
    """Expected gradients for [(mode, pair)] of the normal family.

    One tanh-sinh call for the integrands (tight tolerance) and one for the integral of
    |integrand| times its relative evaluation error (loose: it is an error bound itself,
    so ABS_RTOL suffices).
    """
    elements = []  # (job index, component, a, b)
    params = []
    for index, (mode, pair) in enumerate(jobs):
        sampler = pair.theta if mode.samples_from == "q_theta" else pair.theta_old
        loc, scale = pair.theta[0], math.exp(pair.theta[1])
        # kinks of f, the zero of log r, and the zeros of the score (kinks of |integrand|)
        points = set(_breakpoints(pair, compiled.kinks + (0.0,), sampler[0]))
        points.update((loc, loc - scale, loc + scale))
        edges = [-np.inf] + sorted(points) + [np.inf]
        for component in (0, 1):
            for lo, hi in zip(edges[:-1], edges[1:]):
                elements.append((index, component, lo, hi))
                params.append((
                    loc, scale, pair.p[0], math.exp(pair.p[1]),
                    sampler[0], math.exp(sampler[1]), float(mode.importance_weight),
                    float(mode.value_score), _PATHWISE_CODES[mode.pathwise], float(component)))
    lows = np.array([e[2] for e in elements])
    highs = np.array([e[3] for e in elements])
    args = tuple(np.array(column) for column in zip(*params))

    def signed(x, *arguments):
        return _normal_integrand(compiled, x, *arguments, absolute=False)

    def absolute(x, *arguments):
        return _normal_integrand(compiled, x, *arguments, absolute=True)

    result = tanhsinh(signed, lows, highs, args=args, atol=QUAD_ATOL, rtol=QUAD_RTOL,
                      maxlevel=QUAD_MAXLEVEL)
    result_abs = tanhsinh(absolute, lows, highs, args=args, atol=QUAD_ATOL, rtol=ABS_RTOL,
                          maxlevel=QUAD_MAXLEVEL)
    for outcome in (result, result_abs):
        failed = np.nonzero(~outcome.success)[0]
        if failed.size:
            index, component, lo, hi = elements[failed[0]]
            mode, pair = jobs[index]
            raise GradientUndecided(
                f"quadrature did not converge (status {int(outcome.status[failed[0]])}) for mode "
                f"{mode.name!r}, normal/{pair.regime}, component {('loc', 'log_scale')[component]}, "
                f"interval [{lo:.6g}, {hi:.6g}]: the expected gradient may not exist")
    out = []
    for index in range(len(jobs)):
        gradient, error, total_abs = np.zeros(2), np.zeros(2), np.zeros(2)
        for k, (job, component, _, _) in enumerate(elements):
            if job == index:
                gradient[component] += result.integral[k]
                error[component] += QUAD_SAFETY * result.error[k]
                total_abs[component] += result_abs.integral[k] + result_abs.error[k]
        error += total_abs
        # where |coefficient| < EVAL_SCALE_FLOOR the evaluation error is absolute: at most
        # eval_rel * EVAL_SCALE_FLOOR times E|score| (< 2 / min(scale, 1) for both components)
        error += compiled.eval_rel * EVAL_SCALE_FLOOR * 2 / min(1.0, math.exp(jobs[index][1].theta[1]))
        out.append((gradient, float(np.linalg.norm(error))))
    return out


_PATHWISE_CODES = {"none": 0.0, "estimator": 1.0, "k2": 2.0}
_PATHWISE_NAMES = {code: name for name, code in _PATHWISE_CODES.items()}


def _normal_integrand(compiled, x, loc, scale, loc_p, scale_p, loc_s, scale_s, weighted,
                      value_score, pathwise, component, *, absolute):
    """density(x) [w(x)] coefficient(x) score(x), assembled in log space."""
    with np.errstate(all="ignore"):
        finite = np.isfinite(x)  # tanhsinh also probes the infinite endpoints
        xs = np.where(finite, x, 0.0)
        log_q = _log_normal(xs, loc, scale)
        log_p = _log_normal(xs, loc_p, scale_p)
        # s(x) w(x) = q_old(x) q_theta(x) / q_old(x): in log space the sum is log q_theta
        log_density = np.where(weighted == 1.0, log_q, _log_normal(xs, loc_s, scale_s))
        # log r = log(scale/scale_p) + (z - z_p)(z + z_p)/2: no cancellation of two large squares
        z, z_p = (xs - loc) / scale, (xs - loc_p) / scale_p
        t = np.log(scale / scale_p) + 0.5 * (z - z_p) * (z + z_p)
        coefficient = np.zeros_like(t)
        if np.any(value_score == 1.0):
            coefficient = coefficient + np.where(value_score == 1.0, compiled.g_np(t), 0.0)
        if np.any(pathwise == 1.0):
            coefficient = coefficient - np.where(pathwise == 1.0, compiled.dg_np(t), 0.0)
        coefficient = coefficient - np.where(pathwise == 2.0, t, 0.0)
        log_abs_c = np.log(np.abs(coefficient))
        sign_c = np.sign(coefficient)
        overflow = finite & np.isfinite(t) & ~np.isfinite(coefficient)
        if np.any(overflow):  # the coefficient overflows float64: evaluate it in mpmath
            value_scores = np.broadcast_to(value_score, t.shape)
            pathwises = np.broadcast_to(pathwise, t.shape)
            for i in zip(*np.nonzero(overflow)):
                mode = Mode("", "", False, bool(value_scores[i]), _PATHWISE_NAMES[float(pathwises[i])], "")
                try:
                    with mpmath.workdps(DPS_LOW):
                        exact = _coefficient_mp(compiled, mode, mpmath.mpf(float(t[i])))
                        log_abs_c[i] = float(mpmath.log(abs(exact))) if exact != 0 else -np.inf
                        sign_c[i] = float(mpmath.sign(exact))
                except (MemoryError, OverflowError):  # reported as non-finite: undecided
                    log_abs_c[i], sign_c[i] = np.inf, 1.0
        score = np.where(component == 0.0, z / scale, z * z - 1.0)
        value = np.exp(log_density + log_abs_c + np.log(np.abs(score)))
        if absolute:
            # the rounding of the log densities and of t grows with their size: weight
            # |integrand| by its relative rounding error (see LOG_ROUNDING_ULPS)
            value = value * (compiled.eval_rel + LOG_ROUNDING_ULPS * EPS * (
                1.0 + np.abs(log_q) + np.abs(log_p) + np.abs(log_density)))
        else:
            value = value * sign_c * np.sign(score)
        return np.where(finite & (log_density > -np.inf) & ~np.isnan(value), value, 0.0)


# ------------------------------------------------------------------------ verdicts

@dataclass(frozen=True)
class GradientResult:
    """One row with its error bounds (``as_row`` gives the JSON row)."""

    mode: str
    family: str
    regime: str
    kl_qp: float
    gradient_of: str
    gradient: tuple
    error: float
    grad_kl_qp: tuple
    grad_kl_pq: tuple
    cosine_kl_qp: float | None
    cosine_kl_pq: float | None
    norm_ratio_kl_qp: float
    norm_ratio_kl_pq: float
    multiple_kl_qp: float
    multiple_kl_pq: float

    as_used: str | None = None  # a library mode: how the trainer uses the term
    generic: bool = True  # False: the library mode differs from the generic mode of that name

    def as_row(self) -> dict:
        row = {key: getattr(self, key) for key in ROW_KEYS}
        if self.as_used is not None:
            row["as_used"], row["generic"] = self.as_used, self.generic
        return row


def _round(value, digits=10):
    if value is None:
        return None
    return float(f"{value:.{digits}g}")


def _classify(gradient, error, grad_qp, grad_pq, error_qp, error_pq):
    """The verdict, claiming an equality only within the error bounds."""
    if np.linalg.norm(gradient) <= error:
        return "zero"
    matches = []
    for name, reference, reference_error in (("kl_qp", grad_qp, error_qp), ("kl_pq", grad_pq, error_pq)):
        if np.linalg.norm(gradient - reference) <= error + reference_error:
            matches.append(name)
    if matches:
        return matches[0]
    for name, reference, reference_error in (("kl_qp", grad_qp, error_qp), ("kl_pq", grad_pq, error_pq)):
        factor = float(gradient @ reference / (reference @ reference))
        residual = np.linalg.norm(gradient - factor * reference)
        if residual <= error + abs(factor) * reference_error:
            return f"multiple_of_{name}"
    return "biased"


# public: verify.autograd classifies the gradients of users' own torch terms the same way
classify_gradient = _classify


def _result(mode, pair, gradient, error, as_used=None, generic=True):
    grad_qp, grad_pq, error_qp, error_pq = reference_gradients(pair)
    verdict = _classify(gradient, error, grad_qp, grad_pq, error_qp, error_pq)
    norm = float(np.linalg.norm(gradient))
    nonzero = verdict != "zero"

    def cosine(reference):
        return _round(float(gradient @ reference) / (norm * float(np.linalg.norm(reference)))) if nonzero else None

    return GradientResult(
        mode=mode.name, family=pair.family, regime=pair.regime, kl_qp=_round(kl_qp_value(pair)),
        gradient_of=verdict, gradient=tuple(float(v) for v in gradient), error=float(error),
        grad_kl_qp=tuple(float(v) for v in grad_qp), grad_kl_pq=tuple(float(v) for v in grad_pq),
        cosine_kl_qp=cosine(grad_qp), cosine_kl_pq=cosine(grad_pq),
        norm_ratio_kl_qp=_round(norm / float(np.linalg.norm(grad_qp))),
        norm_ratio_kl_pq=_round(norm / float(np.linalg.norm(grad_pq))),
        multiple_kl_qp=_round(float(gradient @ grad_qp / (grad_qp @ grad_qp))),
        multiple_kl_pq=_round(float(gradient @ grad_pq / (grad_pq @ grad_pq))),
        as_used=as_used, generic=generic,
    )


def _expression_of(estimator_or_expr) -> sp.Expr:
    expr = getattr(estimator_or_expr, "expr", estimator_or_expr)
    return as_expression(expr)


def expected_gradient(estimator_or_expr, mode: str | Mode, family: str, regime: str):
    """(expected gradient, error bound on its 2-norm) for one mode on one fixed pair."""
    compiled = _compile(_expression_of(estimator_or_expr))
    mode = mode if isinstance(mode, Mode) else parse_modes([mode])[0]
    pair = _pair(family, regime)
    if family == "softmax":
        return _softmax_gradient(compiled, mode, pair)
    return _normal_rows(compiled, [(mode, pair)])[0]


def gradient_details(estimator_or_expr, modes=None, *, as_used=None) -> list[GradientResult]:
    """Every (mode, family, regime) of the sweep with gradients and error bounds.

    An estimator with a ``usage`` (a catalog entry) is reported as its library uses it
    (:func:`library_modes`; ``modes`` are then names among ``loss``, ``loss_offpolicy``,
    ``reward``), unless ``as_used=False`` or ``modes`` are :class:`Mode` objects.
    """
    usage = getattr(estimator_or_expr, "usage", None)
    if as_used is None:
        as_used = usage is not None and not (modes and isinstance(modes[0], Mode))
    if as_used:
        return _library_details(estimator_or_expr, modes)
    if getattr(estimator_or_expr, "expr", "") is None:
        raise UsageError(f"{estimator_or_expr.name} is not a function of r: only its library modes exist")
    compiled = _compile(_expression_of(estimator_or_expr))
    modes = parse_modes(modes) if not (modes and isinstance(modes[0], Mode)) else tuple(modes)
    normal_jobs = [(m, p) for m in modes for p in PAIRS if p.family == "normal"]
    normal = dict(zip(((m.name, p.regime) for m, p in normal_jobs), _normal_rows(compiled, normal_jobs)))
    results = []
    for mode in modes:
        for pair in PAIRS:
            if pair.family == "softmax":
                gradient, error = _softmax_gradient(compiled, mode, pair)
            else:
                gradient, error = normal[(mode.name, pair.regime)]
            results.append(_result(mode, pair, gradient, error))
    return results


def gradient_table(estimator_or_expr, modes=None, *, as_used=None) -> list[dict]:
    """Rows with exactly the keys of the issue's JSON, in a fixed order (mode, family, regime);
    library rows add ``as_used`` (how the trainer uses the term) and ``generic``."""
    return [result.as_row() for result in gradient_details(estimator_or_expr, modes, as_used=as_used)]


# ------------------------------------------------------------ library modes (issue 14)

# The log of the weight's value, u = log q_theta(x) - log q_old(x) (0 on-policy).
U = sp.Symbol("u", real=True)
LIBRARY_MODE_NAMES = ("loss", "loss_offpolicy", "reward")
# Near-to-far sweep of the libraries report: p's logits = theta + s (far p - theta).
SWEEP_SCALES = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5)
# mpmath.quad of the non-separable off-policy integrands (a weight inside a clamp):
# two precisions, the difference plus QUAD_SAFETY times mpmath's estimate is the bound.
GENERAL_DPS = (20, 30)
GENERAL_GRID = 8001  # x-grid on which the switches of the clamps are bracketed


@dataclass(frozen=True)
class LibraryMode:
    """A library's use of its KL term, as data: the gradient of one sample x ~
    ``samples_from`` is ``coefficient(t, u) * grad log q_theta(x)`` with t = log r and
    u = log(q_theta/q_old) at x.  The coefficient is derived symbolically from the loss
    the library builds: d/dtheta of t is -score, of u is the score (where the weight is
    not detached).  ``generic``: the same as the generic mode of that name."""

    name: str
    samples_from: str
    coefficient: sp.Expr
    description: str
    generic: bool


def weight_description(usage):
    if usage.weight == "ratio":
        text = "weight q_theta/q_old, not detached"
    elif usage.weight == "self_ratio":
        text = "weight exp(logp - logp.detach()) (1 in value)"
    else:
        return "no weight"
    if usage.weight_detached_beyond is not None:
        text += f", detached where |log r| > {usage.weight_detached_beyond:g}"
    if usage.weight_clamp is not None:
        text += f", multiplied before the clamp to [{usage.weight_clamp[0]:g}, {usage.weight_clamp[1]:g}]"
    return text


@functools.lru_cache(maxsize=128)
def _library_modes(expr_text, usage) -> tuple:
    if usage.full_vocabulary:
        # d/dtheta sum_v q(v) (log q(v) - log p(v)) = E_q[(1 - log r) score], exactly
        coefficient = 1 - T
        text = "exact sum over the vocabulary of q_theta (log q_theta - log p), whatever sampled x"
        return tuple(LibraryMode(name, "q_theta", coefficient, text, False) for name in ("loss", "loss_offpolicy"))
    g = _in_log_ratio(as_expression(expr_text))
    modes = []
    if "loss" in usage.kinds:
        if usage.straight_through:
            on = off = -T  # value of f, gradient of k2 = t^2/2: d/dtheta = -t score
            text = "value of the term, gradient of k2 (straight-through)"
        else:
            if usage.weight_clamp is not None:
                inner = _in_log_ratio(as_expression(usage.weighted_expr))
                low, high = (sp.Float(v) for v in usage.weight_clamp)
                loss = sp.Min(sp.Max(sp.exp(U) * inner, low), high).rewrite(sp.Piecewise)
            elif usage.weight == "none":
                loss = g
            else:
                loss = sp.exp(U) * g
            on = -sp.diff(loss, T)
            if usage.weight != "none":
                through_weight = sp.diff(loss, U)
                if usage.weight_detached_beyond is not None:
                    bound = sp.Float(usage.weight_detached_beyond)
                    through_weight = sp.Piecewise((through_weight, (T >= -bound) & (T <= bound)), (0, True))
                on = on + through_weight
            off = on if usage.weight == "ratio" else on.subs(U, 0)
            on = on.subs(U, 0)
            text = weight_description(usage)
        plain = usage.weight == "none" and not usage.straight_through
        modes.append(LibraryMode("loss", "q_theta", on, f"on-policy loss, {text}", plain))
        modes.append(LibraryMode("loss_offpolicy", "q_old", off, f"x ~ q_old, {text}", plain))
    if "reward" in usage.kinds:
        modes.append(LibraryMode("reward", "q_theta", g, "reward, value detached (REINFORCE)", True))
    return tuple(modes)


def library_modes(estimator) -> tuple[LibraryMode, ...]:
    """The modes in which the estimator's library uses it (needs ``estimator.usage``)."""
    if getattr(estimator, "usage", None) is None:
        raise UsageError(f"{getattr(estimator, 'name', estimator)} has no library usage")
    return _library_modes(estimator.expr, estimator.usage)


def _select(modes, names):
    if names is None:
        return modes
    names = [getattr(n, "name", n) for n in names]
    known = [m.name for m in modes]
    for name in names:
        if name not in known:
            raise UsageError(f"mode {name!r} is not a library mode of this entry; known: {', '.join(known)}")
    if not names:
        raise UsageError("no mode given")
    return tuple(m for m in modes if m.name in names)


def _separable(mode):
    """(expression in t, importance weight?) for the engine, or None if the coefficient
    depends on u other than through a factor exp(u)."""
    if not mode.coefficient.has(U):
        return mode.coefficient, False
    rest = sp.powsimp(sp.expand(mode.coefficient * sp.exp(-U)))
    return (rest, True) if not rest.has(U) else None


def _library_gradients(mode, pairs):
    """[(gradient, error)] of one library mode on ``pairs``."""
    separable = _separable(mode)
    if separable is None:
        return [_general_gradient(mode, pair) for pair in pairs]
    expr, weighted = separable
    compiled = _compile_in_t(expr, str(expr), False)
    engine_mode = Mode(mode.name, mode.samples_from, weighted, True, "none", mode.description)
    out = {}
    normal = [p for p in pairs if p.family == "normal"]
    if normal:
        out.update(zip(normal, _normal_rows(compiled, [(engine_mode, p) for p in normal])))
    for pair in pairs:
        if pair.family == "softmax":
            out[pair] = _softmax_gradient(compiled, engine_mode, pair)
    return [out[p] for p in pairs]


def _general_softmax_at(function, pair, dps):
    with mpmath.workdps(dps):
        logq = _softmax_log([mpmath.mpf(v) for v in pair.theta])
        logp = _softmax_log([mpmath.mpf(v) for v in pair.p])
        logs = _softmax_log([mpmath.mpf(v) for v in pair.theta_old])
        q = [mpmath.exp(v) for v in logq]
        terms = [mpmath.exp(c) * mpmath.mpf(function(b - a, a - c)) for a, b, c in zip(logq, logp, logs)]
        total = mpmath.fsum(terms)
        return [terms[i] - q[i] * total for i in range(len(q))], mpmath.fsum(abs(v) for v in terms) * 2


def _general_normal_at(function, switches, pair, dps):
    (m, s), (mp_, sp_), (mo, so) = pair.theta, pair.p, pair.theta_old
    with mpmath.workdps(dps):
        def log_density(x, loc, log_scale):
            return -((x - loc) / mpmath.exp(log_scale)) ** 2 / 2 - log_scale - mpmath.log(2 * mpmath.pi) / 2

        def integrand(x, component):
            log_q, log_p, log_old = log_density(x, m, s), log_density(x, mp_, sp_), log_density(x, mo, so)
            z = (x - m) / mpmath.exp(s)
            score = z / mpmath.exp(s) if component == 0 else z * z - 1
            return mpmath.exp(log_old) * mpmath.mpf(function(log_p - log_q, log_q - log_old)) * score

        points = [-mpmath.inf] + [mpmath.mpf(x) for x in switches] + [mpmath.inf]
        values, errors = [], []
        for component in (0, 1):
            value, error = mpmath.quad(lambda x: integrand(x, component), points, error=True)
            values.append(value)
            errors.append(error)
        return np.array([float(v) for v in values]), float(mpmath.fsum(errors))


def _general_switches(mode, pair):
    """x where a condition of the coefficient switches (bracketed on a grid, then refined),
    and the centres of q_theta and q_old."""
    (m, s), (mp_, sp_), (mo, so) = pair.theta, pair.p, pair.theta_old

    def log_density(x, loc, log_scale):
        return -0.5 * ((x - loc) / math.exp(log_scale)) ** 2 - log_scale

    def t_u(x):
        log_q = log_density(x, m, s)
        return log_density(x, mp_, sp_) - log_q, log_q - log_density(x, mo, so)

    width = 40 * math.exp(max(s, so))
    grid = np.linspace(mo - width, mo + width, GENERAL_GRID)
    points = {m, m - math.exp(s), m + math.exp(s), mo}
    for relation in mode.coefficient.atoms(Relational):
        h = sp.lambdify((T, U), relation.lhs - relation.rhs, "numpy")

        def switch(x):
            with np.errstate(all="ignore"):
                return np.asarray(h(*t_u(x)), dtype=np.float64)

        values = switch(grid)
        finite = np.isfinite(values)
        change = finite[:-1] & finite[1:] & (np.sign(values[:-1]) * np.sign(values[1:]) < 0)
        for i in np.nonzero(change)[0]:
            points.add(float(brentq(lambda x: float(switch(x)), grid[i], grid[i + 1], xtol=1e-14)))
    return sorted(points)


def _general_gradient(mode, pair):
    """A coefficient that is not a function of t alone (a weight inside a clamp): exact
    sums at two precisions (softmax), mpmath.quad at two precisions (normal)."""
    function = sp.lambdify((T, U), mode.coefficient, "mpmath")
    if pair.family == "softmax":
        high, scale = _general_softmax_at(function, pair, DPS_HIGH)
        low, _ = _general_softmax_at(function, pair, DPS_LOW)
        with mpmath.workdps(DPS_HIGH):
            difference = math.sqrt(float(mpmath.fsum((a - b) ** 2 for a, b in zip(high, low))))
            floor = float(scale) * EXACT_SUM_FLOOR
        gradient = np.array([float(v) for v in high])
        return gradient, difference + floor + ROUNDING_REL * float(np.linalg.norm(gradient))
    switches = _general_switches(mode, pair)
    low, low_error = _general_normal_at(function, switches, pair, GENERAL_DPS[0])
    high, high_error = _general_normal_at(function, switches, pair, GENERAL_DPS[1])
    error = float(np.linalg.norm(high - low)) + QUAD_SAFETY * (high_error + low_error) \
        + ROUNDING_REL * float(np.linalg.norm(high))
    return high, error


def _library_details(estimator, names) -> list[GradientResult]:
    results = []
    for mode in _select(library_modes(estimator), names):
        for pair, (gradient, error) in zip(PAIRS, _library_gradients(mode, PAIRS)):
            results.append(_result(mode, pair, gradient, error, as_used=mode.description, generic=mode.generic))
    return results


def sweep_pairs() -> tuple[Pair, ...]:
    """Softmax pairs from near to far: p's logits = theta + s (far p - theta), s in SWEEP_SCALES."""
    far = _pair("softmax", "far")
    return tuple(Pair("softmax", f"s={scale:g}", far.theta,
                      tuple(a + scale * (b - a) for a, b in zip(far.theta, far.p)), far.theta_old,
                      f"p logits = theta + {scale:g} (far p - theta)") for scale in SWEEP_SCALES)


def library_sweep(estimator) -> list[dict]:
    """Per library mode and sweep pair: KL(q||p), the verdict, and the cosines of the
    expected gradient with grad KL(q||p) and grad KL(p||q) (exact sums with bounds)."""
    pairs = sweep_pairs()
    rows = []
    for mode in library_modes(estimator):
        for pair, (gradient, error) in zip(pairs, _library_gradients(mode, pairs)):
            result = _result(mode, pair, gradient, error)
            rows.append({"mode": mode.name, "scale": SWEEP_SCALES[pairs.index(pair)], "kl_qp": result.kl_qp,
                         "kl_pq": _round(kl_pq_value(pair)), "gradient_of": result.gradient_of,
                         "cosine_kl_qp": result.cosine_kl_qp, "cosine_kl_pq": result.cosine_kl_pq})
    return rows


# ----------------------------------------------------------- symbolic cross-check

_CLAIM_CHECKS = {
    "loss_grad_zero": ("loss", "zero"),
    "loss_grad_kl_qp": ("loss", "kl_qp"),
    "loss_grad_kl_pq": ("loss", "kl_pq"),
    "reward_grad_kl_qp": ("reward", "kl_qp"),
}


def symbolic_disagreements(symbolic_verdicts: dict, results) -> list[str]:
    """Where the symbolic gradient verdicts and these numbers disagree (a harness bug).

    A ``proved`` claim must hold on every pair of its mode; a ``refuted`` one must fail
    on at least one pair.  Other verdicts, claims outside the gradient claims, and modes
    absent from ``results`` are not checked.  ``results`` are rows of gradient_table
    (dicts) or GradientResult objects.
    """
    rows = [r.as_row() if isinstance(r, GradientResult) else r for r in results]
    rows = [r for r in rows if r.get("generic", True)]  # a library's weights change the gradient
    problems = []
    for claim in sorted(symbolic_verdicts):
        if claim not in _CLAIM_CHECKS:
            continue
        verdict = symbolic_verdicts[claim]
        mode, expected = _CLAIM_CHECKS[claim]
        relevant = [r for r in rows if r["mode"] == mode]
        if not relevant:
            continue
        mismatches = [r for r in relevant if r["gradient_of"] != expected]
        if verdict == "proved" and mismatches:
            r = mismatches[0]
            problems.append(
                f"{claim}: symbolic 'proved' but the exact {mode} gradient on {r['family']}/{r['regime']} "
                f"is {r['gradient_of']!r}, not {expected!r} ({len(mismatches)} of {len(relevant)} pairs)")
        elif verdict == "refuted" and not mismatches:
            problems.append(
                f"{claim}: symbolic 'refuted' but the exact {mode} gradient is {expected!r} "
                f"on all {len(relevant)} pairs of the sweep")
    return problems
