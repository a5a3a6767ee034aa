"""Accurate, range-extended evaluation of an estimator f as a function of t = log r.

The checked sympy expression in ``r`` is rewritten in t (r = exp(t)); ``exp(a) - 1``
becomes ``expm1(a)`` and ``log(1 + a)`` becomes ``log1p(a)`` so that f keeps its
relative accuracy near r = 1.  Every node is evaluated as ``m * exp(e)`` (mantissa,
log-scale), so that r = exp(t) for t far beyond 709 is still a number and the
integrand q * f stays in log space (no 0 * inf in the tails).  Next to each value
a running error bound is carried: a first-order bound on the absolute error of
``m`` (in the same scale) from the rounding of every operation and from the error of
t itself.  Libm functions are assumed correct to ``LIBM_ULPS`` ulps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from verify import UsageError
from verify.expression import R

__all__ = ["T", "compile_estimator", "Node", "evaluate", "constant_shift", "square", "plain"]

T = sp.Symbol("t", real=True)
EPS = float(np.finfo(np.float64).eps)
# Ulps of error allowed for each numpy elementary function (exp, log, expm1, log1p):
# glibc's are within 1-2 ulps; 4 leaves a margin.
LIBM_ULPS = 4.0
# Above this log-magnitude a mantissa is folded into the scale e, so m never overflows.
_FOLD = 600.0


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple = ()
    value: float = 0.0


def _to_node(expr) -> Node:
    if expr == T:
        return Node("t")
    if expr.is_Number or expr in (sp.E, sp.pi):
        value = float(expr)
        if not math.isfinite(value):
            raise UsageError(f"bad expression: constant {expr} is not finite")
        return Node("const", value=value)
    if expr.is_Add:
        terms = list(expr.args)
        constant = sum((a for a in terms if a.is_number), sp.Integer(0))
        rest = [a for a in terms if not a.is_number]
        if constant != 0:
            for i, term in enumerate(rest):
                coeff, base = term.as_coeff_Mul()
                if isinstance(base, sp.exp) and coeff == -constant:
                    # coeff * exp(a) - coeff = coeff * expm1(a): no cancellation near a = 0
                    others = [_to_node(a) for j, a in enumerate(rest) if j != i]
                    expm1 = Node("expm1", (_to_node(base.args[0]),))
                    scaled = expm1 if coeff == 1 else Node("mul", (Node("const", value=float(coeff)), expm1))
                    return scaled if not others else Node("add", tuple(others) + (scaled,))
        nodes = [_to_node(a) for a in rest]
        if constant != 0:
            nodes.append(_to_node(constant))
        return nodes[0] if len(nodes) == 1 else Node("add", tuple(nodes))
    if expr.is_Mul:
        return Node("mul", tuple(_to_node(a) for a in expr.args))
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent.is_Integer:
            return Node("ipow", (_to_node(base),), value=int(exponent))
        # a real power of a positive base: exp(exponent * log(base))
        return Node("exp", (Node("mul", (_to_node(exponent), Node("log", (_to_node(base),)))),))
    if isinstance(expr, sp.exp):
        return Node("exp", (_to_node(expr.args[0]),))
    if isinstance(expr, sp.log):
        inner = expr.args[0]
        if inner.is_Add:
            constant = sum((a for a in inner.args if a.is_number), sp.Integer(0))
            if constant == 1:
                return Node("log1p", (_to_node(inner - 1),))
        return Node("log", (_to_node(inner),))
    if isinstance(expr, sp.Abs):
        return Node("abs", (_to_node(expr.args[0]),))
    if isinstance(expr, (sp.Min, sp.Max)):
        return Node("min" if isinstance(expr, sp.Min) else "max", tuple(_to_node(a) for a in expr.args))
    raise UsageError(f"bad expression: cannot evaluate {type(expr).__name__} exactly")


def compile_estimator(expr) -> Node:
    """The evaluation tree of f(t) for a checked sympy expression in ``R``."""
    in_t = sp.sympify(expr).subs(R, sp.exp(T))
    if in_t.free_symbols - {T}:
        raise UsageError("bad expression: the only variable allowed is r")
    return _to_node(in_t)


def constant_shift(node: Node, shift: float) -> Node:
    return Node("add", (node, Node("const", value=-shift)), value=0.0) if shift else node


def square(node: Node) -> Node:
    return Node("ipow", (node,), value=2)


def plain(m, e):
    """m * exp(e) as a float array (may overflow to inf)."""
    if not np.any(e):
        return m
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(e == 0, m, m * np.exp(np.minimum(e, 1000.0)))


def _fold(m, e, err, threshold=math.exp(_FOLD)):
    big = np.abs(m) > threshold
    if np.any(big):
        scale = np.where(big, np.log(np.abs(np.where(big, m, 1.0))), 0.0)
        factor = np.exp(-scale)
        m, err, e = m * factor, err * factor, e + scale
    return m, e, err


def _exp_of(value, err_value, minus_one=False):
    """exp(v) (or expm1) of a plain value with absolute error err_value, range-extended."""
    if np.all(np.abs(value) <= _FOLD):  # the common case: every value in range
        growth = np.exp(value)
        m = np.expm1(value) if minus_one else growth
        with np.errstate(over="ignore"):
            err = growth * np.expm1(np.minimum(err_value, 700.0)) + LIBM_ULPS * EPS * np.abs(m)
        return m, np.zeros_like(value), err
    with np.errstate(over="ignore", invalid="ignore"):
        small = np.abs(value) <= _FOLD  # beyond, exp(v) is kept as (1, v): no overflow, no underflow
        v_small = np.where(small, value, 0.0)
        if minus_one:
            m = np.where(small, np.expm1(v_small), 1.0)
        else:
            m = np.where(small, np.exp(v_small), 1.0)
        e = np.where(small, 0.0, value)
        growth = np.where(small, np.exp(v_small), 1.0)  # derivative, in the scale of m
        # |exp(v + d) - exp(v)| <= exp(v) * expm1(|d|); plus the rounding of exp itself
        err = growth * np.expm1(np.minimum(err_value, 700.0)) + LIBM_ULPS * EPS * np.abs(m)
        # a value beyond the fold is exp(v) itself; its error is relative
        err = np.where(small, err, np.expm1(np.minimum(err_value + LIBM_ULPS * EPS * np.abs(value), 700.0)))
    return m, e, err


def evaluate(node: Node, t, t_err):
    """(m, e, err): f = m * exp(e) with |true f - m exp(e)| <= err * exp(e), elementwise."""
    op = node.op
    if op == "t":
        return t, np.zeros_like(t), t_err
    if op == "const":
        value = np.full_like(t, node.value)
        return value, np.zeros_like(t), np.abs(value) * EPS / 2
    if op == "add":
        parts = [evaluate(a, t, t_err) for a in node.args]
        if not any(np.any(p[1]) for p in parts):
            m = parts[0][0]
            err = parts[0][2]
            magnitude = np.abs(m)
            for pm, _, perr in parts[1:]:
                m = m + pm
                err = err + perr
                magnitude = magnitude + np.abs(pm)
            return m, parts[0][1], err + len(parts) * EPS * magnitude
        e = np.max(np.stack([p[1] for p in parts]), axis=0)
        m = np.zeros_like(t)
        err = np.zeros_like(t)
        magnitude = np.zeros_like(t)
        with np.errstate(over="ignore", invalid="ignore"):
            for pm, pe, perr in parts:
                factor = np.exp(pe - e)
                term = pm * factor
                m = m + term
                err = err + perr * factor
                magnitude = magnitude + np.abs(term)
        # each addition and rescaling rounds at most eps/2 of the running magnitude
        err = err + len(parts) * EPS * magnitude
        return m, e, err
    if op == "mul":
        # mantissas above 1e100 are folded first, so that a product of two cannot overflow
        parts = [_fold(*evaluate(a, t, t_err), threshold=1e100) for a in node.args]
        m = np.ones_like(t)
        e = np.zeros_like(t)
        for pm, pe, _ in parts:
            m = m * pm
            e = e + pe
        err = np.zeros_like(t)
        for i, (_, _, perr) in enumerate(parts):
            others = np.ones_like(t)
            for j, (qm, _, qerr) in enumerate(parts):
                if j != i:
                    others = others * (np.abs(qm) + qerr)
            err = err + perr * others
        err = err + len(parts) * EPS * np.abs(m)
        return _fold(m, e, err)
    if op == "ipow":
        n = int(node.value)
        # fold so that |m|^n stays below the float range
        bm, be, berr = _fold(*evaluate(node.args[0], t, t_err), threshold=math.exp(300.0 / max(abs(n), 1)))
        if n == 0:
            return np.ones_like(t), np.zeros_like(t), np.zeros_like(t)
        if n < 0:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                inverse = 1.0 / bm
                # |1/(m+d) - 1/m| <= d / (|m| (|m| - d)) when d < |m|
                ierr = np.where(berr < np.abs(bm), berr / (np.abs(bm) * (np.abs(bm) - berr)), np.inf)
                ierr = ierr + EPS * np.abs(inverse)
            bm, be, berr = _fold(inverse, -be, ierr)
            n = -n
        with np.errstate(over="ignore", invalid="ignore"):
            m = bm ** n
            err = n * (np.abs(bm) + berr) ** (n - 1) * berr + 2 * n * EPS * np.abs(m)
        return _fold(m, be * n, err)
    if op in ("exp", "expm1"):
        am, ae, aerr = evaluate(node.args[0], t, t_err)
        value = plain(am, ae)
        with np.errstate(over="ignore", invalid="ignore"):
            value_err = plain(aerr, ae)
        return _exp_of(value, value_err, minus_one=(op == "expm1"))
    if op in ("log", "log1p"):
        am, ae, aerr = evaluate(node.args[0], t, t_err)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if op == "log1p":
                scaled = ae > 0
                # log1p(m e^E) = E + log(m) + log1p(e^-E / m) for the folded case
                m_plain = np.where(scaled, 0.0, am)
                value = np.where(scaled, ae + np.log(np.abs(am)) + np.log1p(np.exp(-ae) / am), np.log1p(m_plain))
                base = np.where(scaled, np.abs(am), 1.0 + am)
            else:
                value = ae + np.log(am)
                base = np.abs(am)
            # |log(b + d) - log(b)| <= -log1p(-d / b) when d < b
            ratio = aerr / base
            err = np.where(ratio < 1, -np.log1p(-np.minimum(ratio, 1 - EPS)), np.inf)
            err = err + LIBM_ULPS * EPS * np.abs(value) + EPS * np.abs(ae)
        return value, np.zeros_like(t), err
    if op == "abs":
        am, ae, aerr = evaluate(node.args[0], t, t_err)
        return np.abs(am), ae, aerr
    if op in ("min", "max"):
        parts = [evaluate(a, t, t_err) for a in node.args]
        if not any(np.any(p[1]) for p in parts):
            # min and max are 1-Lipschitz in the sup norm: the error is at most the largest one
            pick = np.minimum if op == "min" else np.maximum
            m, err = parts[0][0], parts[0][2]
            for pm, _, perr in parts[1:]:
                m, err = pick(m, pm), np.maximum(err, perr)
            return m, parts[0][1], err
        values = np.stack([plain(p[0], p[1]) for p in parts])
        pick = np.argmin(values, axis=0) if op == "min" else np.argmax(values, axis=0)
        m = np.choose(pick, [p[0] for p in parts])
        e = np.choose(pick, [p[1] for p in parts])
        # min and max are 1-Lipschitz in the sup norm: the error is at most the largest one
        with np.errstate(over="ignore", invalid="ignore"):
            errs = np.stack([plain(p[2], p[1]) for p in parts])
            err_plain = np.max(errs, axis=0)
            err = np.where(e == 0, err_plain, err_plain * np.exp(-np.minimum(e, 700.0)))
        return m, e, err
    raise AssertionError(op)


def switches(node: Node) -> list:
    """Nodes whose sign change is a kink of f: arguments of Abs, differences of Min/Max args.

    Quadrature error estimates are only honest on smooth pieces, so these zeros become
    breakpoints."""
    found = []
    if node.op == "abs":
        found.append(node.args[0])
    if node.op in ("min", "max"):
        for i, a in enumerate(node.args):
            for b in node.args[i + 1:]:
                found.append(Node("add", (a, Node("mul", (Node("const", value=-1.0), b)))))
    for arg in node.args:
        found.extend(switches(arg))
    return found
