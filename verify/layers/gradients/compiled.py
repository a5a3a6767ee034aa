"""An estimator compiled for the engine: g(t) = f(exp(t)) and g'(t) = r f'(r) in numpy
(rewritten with expm1/log1p) and in mpmath, the kinks of f, and a measured evaluation error."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp
from scipy.optimize import brentq
from sympy.codegen.rewriting import optimize, optims_c99
from sympy.core.relational import Relational

from verify.core.expression import RATIO
from verify.errors import UsageError
from verify.layers.gradients.bounds import (
    DPS_LOW, EPS, EVAL_REL_FLOOR, EVAL_SAFETY, EVAL_SCALE_FLOOR, GROWTH_LOG_LIMIT, GROWTH_PROBE_T, KINK_GRID,
    GradientUndecided)
from verify.layers.gradients.symbols import LOG_RATIO


@dataclass(frozen=True)
class Compiled:
    """f as the engine evaluates it, in t = log r."""

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
        if not difference.has(LOG_RATIO):
            continue
        h = sp.lambdify(LOG_RATIO, difference, "numpy")
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


def in_log_ratio(expr: sp.Expr) -> sp.Expr:
    """g(t) = f(exp(t)), with clamps and Abs as Piecewise (so that it can be differentiated)."""
    piecewise = expr.rewrite(sp.Piecewise) if expr.has(sp.Min, sp.Max, sp.Abs) else expr
    g = piecewise.xreplace({RATIO: sp.exp(LOG_RATIO)})
    return g.subs(sp.log(sp.exp(LOG_RATIO)), LOG_RATIO)


@functools.lru_cache(maxsize=64)
def compile_expression(expr: sp.Expr) -> Compiled:
    return compile_in_log_ratio(in_log_ratio(expr), expr)


@functools.lru_cache(maxsize=128)
def compile_in_log_ratio(g: sp.Expr, label, with_derivative=True) -> Compiled:
    """Compile g(t) (and its derivative) for the engine; ``label`` names it in messages.
    Without the derivative (modes with no pathwise term) dg is 0."""
    expr = label
    dg = sp.diff(g, LOG_RATIO) if with_derivative else sp.Integer(0)
    if dg.has(sp.Derivative, sp.Subs):
        raise UsageError(f"cannot differentiate {expr}")
    # piecewise_fold first, so that exp(t) - 1 inside a clamp becomes expm1(t)
    g_np = _vectorized(sp.lambdify(LOG_RATIO, optimize(sp.piecewise_fold(g), optims_c99), "numpy"))
    dg_np = _vectorized(sp.lambdify(LOG_RATIO, optimize(sp.piecewise_fold(dg), optims_c99), "numpy"))
    g_mp0, dg_mp0 = sp.lambdify(LOG_RATIO, g, "mpmath"), sp.lambdify(LOG_RATIO, dg, "mpmath")

    def g_mp(t):
        return mpmath.mpf(g_mp0(t))

    def dg_mp(t):
        return mpmath.mpf(dg_mp0(t))

    _check_growth(expr, g_mp, dg_mp)
    return Compiled(g_np, dg_np, g_mp, dg_mp, _find_kinks(g),
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


def coefficient_mp(compiled, mode, t):
    """The mode's coefficient without the weight, in mpmath: [f] + pathwise."""
    value = compiled.g_mp(t) if mode.value_score else mpmath.mpf(0)
    if mode.pathwise == "estimator":
        value -= compiled.dg_mp(t)
    elif mode.pathwise == "k2":
        value -= t
    return value
