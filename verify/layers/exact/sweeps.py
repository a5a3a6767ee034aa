"""Deterministic paths of pairs, per family, from p close to q to far apart.

Each path fixes q and moves p along one parameter (location and scale together for
the location-scale families); the steps are geometric, chosen so
that the true KL(q||p) runs from about 1e-4 to about 5 (``verify all`` draws relative
bias and std/KL along them).  The specs are fixed strings: the same call gives the same
pairs, byte for byte.
"""
from __future__ import annotations

import math

from verify.errors import UsageError
from verify.layers.exact.evaluate import compile_estimator
from verify.layers.exact.families import parse_family
from verify.layers.exact.moments import Moments, moments_of_node

__all__ = ["SWEEP_FAMILIES", "sweep", "sweep_moments", "STEPS"]

STEPS = 9


def _geometric_steps(low, high, steps=STEPS):
    return [float(f"{low * (high / low) ** (i / (steps - 1)):.6g}") for i in range(steps)]


_CATEGORICAL_Q_LOGITS = [0.0, 1.0, 2.0, 0.5, -1.0, 1.5, -0.5, 0.25]
_CATEGORICAL_P_DIRECTION = [1.0, -0.5, 0.25, -1.0, 0.75, 0.0, -0.25, 0.5]


def _p_scale(d):
    """p's scale shrinks as its location moves: with a pure location shift of a symmetric
    family KL(p||q) = KL(q||p), and a path could not tell the two directions apart."""
    return float(f"{math.exp(-d / 4):.6g}")


def _norm_path():
    return [(f"norm({d!r}, {_p_scale(d)!r})", "norm(0.0, 1.0)") for d in _geometric_steps(0.01329, 1.902)]


def _laplace_path():
    return [(f"laplace({d!r}, {_p_scale(d)!r})", "laplace(0.0, 1.0)") for d in _geometric_steps(0.01373, 3.085)]


def _t_path():
    return [(f"t(5.0, {d!r}, {_p_scale(d)!r})", "t(5.0, 0.0, 1.0)") for d in _geometric_steps(0.0155, 3.017)]


def _gamma_path():
    # p's scale grows: past scale 2 (c > log 2) E_q[r^2] diverges and Var[k3] is infinite
    return [(f"gamma(2.0, scale={math.exp(c):.6g})", "gamma(2.0, scale=1.0)")
            for c in _geometric_steps(0.00707, 3.5)]


def _beta_path():
    return [(f"beta({2.0 * math.exp(c):.6g}, 3.0)", "beta(2.0, 3.0)") for c in _geometric_steps(0.0125, 2.75)]


def _poisson_path():
    return [(f"poisson({4.0 * math.exp(c):.6g})", "poisson(4.0)") for c in _geometric_steps(0.00707, 1.1)]


def _categorical_path():
    q = "categorical(logits=[" + ", ".join(repr(v) for v in _CATEGORICAL_Q_LOGITS) + "])"
    pairs = []
    for c in _geometric_steps(0.0148, 5.5):
        logits = [float(f"{a + c * b:.6g}") for a, b in zip(_CATEGORICAL_Q_LOGITS, _CATEGORICAL_P_DIRECTION)]
        pairs.append(("categorical(logits=[" + ", ".join(repr(v) for v in logits) + "])", q))
    return pairs


def _mixture_path():
    q = "mixture(weights=[0.5, 0.5], components=[norm(-1.0, 1.0), norm(1.0, 1.0)])"
    return [(f"mixture(weights=[0.5, 0.5], components=[norm({-1.0 + d:.6g}, {_p_scale(d)!r}), "
             f"norm({1.0 + d:.6g}, {_p_scale(d)!r})])", q)
            for d in _geometric_steps(0.01806, 2.308)]


_PATHS = {"norm": _norm_path, "laplace": _laplace_path, "t": _t_path, "gamma": _gamma_path, "beta": _beta_path,
          "poisson": _poisson_path, "categorical": _categorical_path, "mixture": _mixture_path}
SWEEP_FAMILIES = tuple(_PATHS)


def sweep(family_name: str) -> list[tuple[str, str]]:
    """(p spec, q spec) pairs along the family's path, nearest first."""
    if family_name not in _PATHS:
        raise UsageError(f"unknown sweep family {family_name!r}; known: {', '.join(SWEEP_FAMILIES)}")
    return _PATHS[family_name]()


def sweep_moments(expr, family_name: str) -> list[Moments]:
    """Exact moments of ``expr`` at every pair of the family's path."""
    node = compile_estimator(expr)
    return [moments_of_node(node, parse_family(p), parse_family(q)) for p, q in sweep(family_name)]
