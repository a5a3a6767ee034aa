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

from verify.core.dtypes import EPS
from verify.core.expression import RATIO
from verify.errors import UsageError

__all__ = ["LOG_RATIO", "compile_estimator", "Node", "evaluate", "evaluate_parts", "constant_shift", "square", "plain"]

LOG_RATIO = sp.Symbol("t", real=True)
# Ulps of error allowed for each numpy elementary function (exp, log, expm1, log1p):
# glibc's are within 1-2 ulps; 4 leaves a margin.
LIBM_ULPS = 4.0
# Above this log-magnitude a mantissa is folded into the scale e, so m never overflows.
_FOLD_LOG_MAGNITUDE = 600.0


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple = ()
    value: float = 0.0


def _to_node(expr, memo=None) -> Node:
    """The tree of ``expr``; equal sub-expressions become one Node object, so that one
    evaluation computes them once (the evaluation memo is keyed by object)."""
    if memo is None:
        memo = {}
    found = memo.get(expr)
    # sympy may call 2 and 2.0 equal: share only what is the same tree
    if found is not None and sp.srepr(found[0]) == sp.srepr(expr):
        return found[1]
    node = _build_node(expr, memo)
    memo.setdefault(expr, (expr, node))
    return node


def _build_node(expr, memo) -> Node:
    if expr == LOG_RATIO:
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
                    others = [_to_node(a, memo) for j, a in enumerate(rest) if j != i]
                    expm1 = Node("expm1", (_to_node(base.args[0], memo),))
                    scaled = expm1 if coeff == 1 else Node("mul", (Node("const", value=float(coeff)), expm1))
                    return scaled if not others else Node("add", tuple(others) + (scaled,))
        nodes = [_to_node(a, memo) for a in rest]
        if constant != 0:
            nodes.append(_to_node(constant, memo))
        return nodes[0] if len(nodes) == 1 else Node("add", tuple(nodes))
    if expr.is_Mul:
        return Node("mul", tuple(_to_node(a, memo) for a in expr.args))
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent.is_Integer:
            return Node("ipow", (_to_node(base, memo),), value=int(exponent))
        # a real power of a positive base: exp(exponent * log(base))
        return Node("exp", (Node("mul", (_to_node(exponent, memo), Node("log", (_to_node(base, memo),)))),))
    if isinstance(expr, sp.exp):
        return Node("exp", (_to_node(expr.args[0], memo),))
    if isinstance(expr, sp.log):
        inner = expr.args[0]
        if inner.is_Add:
            constant = sum((a for a in inner.args if a.is_number), sp.Integer(0))
            if constant == 1:
                return Node("log1p", (_to_node(inner - 1, memo),))
        return Node("log", (_to_node(inner, memo),))
    if isinstance(expr, sp.Abs):
        return Node("abs", (_to_node(expr.args[0], memo),))
    if isinstance(expr, (sp.Min, sp.Max)):
        return Node("min" if isinstance(expr, sp.Min) else "max", tuple(_to_node(a, memo) for a in expr.args))
    raise UsageError(f"bad expression: cannot evaluate {type(expr).__name__} exactly")


def compile_estimator(expr) -> Node:
    """The evaluation tree of f(t) for a checked sympy expression in ``R``."""
    if not isinstance(expr, sp.Basic):
        raise TypeError("compile_estimator takes a checked sympy expression (see verify.core.expression)")
    in_t = expr.subs(RATIO, sp.exp(LOG_RATIO))
    if in_t.free_symbols - {LOG_RATIO}:
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


# Inside one evaluation a constant stays a Python float and a scale that is zero
# everywhere stays the scalar 0.0 (numpy broadcasts them): the same arithmetic as on
# full arrays, without the passes over the arrays.  ``evaluate`` returns full arrays.


def _unscaled(e) -> bool:
    """True when the scale e is zero everywhere (cheap for the scalar 0.0)."""
    if np.ndim(e) == 0:
        return e == 0
    return not np.any(e)


def _max_abs_above(m, threshold) -> bool:
    """any(|m| > threshold) by two reductions (nan compares false, as in the elementwise test)."""
    if np.ndim(m) == 0:
        return bool(abs(m) > threshold)
    if m.size == 0:
        return False
    return bool(m.max() > threshold or m.min() < -threshold)


def _fold(m, e, err, threshold=math.exp(_FOLD_LOG_MAGNITUDE)):
    if _max_abs_above(m, threshold):
        big = np.abs(m) > threshold
        scale = np.where(big, np.log(np.abs(np.where(big, m, 1.0))), 0.0)
        factor = np.exp(-scale)
        m, err, e = m * factor, err * factor, e + scale
    return m, e, err


def _within(value, bound) -> bool:
    """all(|value| <= bound) (nan gives False, as in the elementwise test)."""
    if np.ndim(value) == 0:
        return bool(abs(value) <= bound)
    if value.size == 0:
        return True
    return bool(value.max() <= bound and value.min() >= -bound)


def _exp_of(value, err_value, minus_one=False):
    """exp(v) (or expm1) of a plain value with absolute error err_value, range-extended."""
    if _within(value, _FOLD_LOG_MAGNITUDE):  # the common case: every value in range
        growth = np.exp(value)
        m = np.expm1(value) if minus_one else growth
        capped = err_value if _within(err_value, 700.0) else np.minimum(err_value, 700.0)
        with np.errstate(over="ignore"):
            err = growth * np.expm1(capped) + LIBM_ULPS * EPS * np.abs(m)
        return m, 0.0, err
    with np.errstate(over="ignore", invalid="ignore"):
        # beyond, exp(v) is kept as (1, v): no overflow, no underflow; but expm1(v) for
        # v < -_FOLD_LOG_MAGNITUDE is -1 + exp(v), a plain number (keeping it as (1, v) dropped the -1)
        small = (np.abs(value) <= _FOLD_LOG_MAGNITUDE) | ((value < 0) & minus_one)
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


def _scaled(constant, part):
    """c * x for a scalar c: the product bound of "mul" regrouped so that x is passed over
    fewer times.  That bound, err_c (|x| + err_x) + err_x (|c| + err_c) + 2 eps |c x|, is
    at most (err_c + 2 eps |c| (1 + eps)) |x| + (|c| + 2 err_c) err_x, since the rounded
    |c x| is at most |c| |x| (1 + eps/2)."""
    c, ce, c_err = constant
    x, xe, x_err = part
    m = c * x
    abs_c = abs(float(c))
    c_err = float(c_err)
    err = (c_err + 2 * EPS * abs_c * (1 + EPS)) * np.abs(x) + (abs_c + 2 * c_err) * x_err
    return m, xe if np.ndim(ce) == 0 and ce == 0 else ce + xe, err


def evaluate(node: Node, t, t_err):
    """(m, e, err): f = m * exp(e) with |true f - m exp(e)| <= err * exp(e), elementwise."""
    m, e, err = evaluate_parts(node, t, t_err)
    shape, dtype = np.shape(t), np.result_type(t)
    return tuple(np.asarray(x) if np.shape(x) == shape else np.full(shape, x, dtype=dtype) for x in (m, e, err))


def evaluate_parts(node: Node, t, t_err):
    """As ``evaluate``, but a constant part may come back as a scalar (and a scale that is
    zero everywhere as the scalar 0.0), broadcasting against t."""
    return _evaluate(node, t, t_err, {})


def _evaluate(node: Node, t, t_err, memo):
    key = id(node)
    found = memo.get(key)
    if found is None:
        found = memo[key] = _evaluate_node(node, t, t_err, memo)
    return found


def _evaluate_node(node: Node, t, t_err, memo):
    op = node.op
    if op == "t":
        return t, 0.0, t_err
    if op == "const":
        value = float(node.value)
        return value, 0.0, abs(value) * EPS / 2
    if op == "add":
        parts = [_evaluate(a, t, t_err, memo) for a in node.args]
        if all(_unscaled(p[1]) for p in parts):
            m = parts[0][0]
            err = parts[0][2]
            magnitude = np.abs(m)
            for pm, _, perr in parts[1:]:
                m = m + pm
                err = err + perr
                magnitude = magnitude + np.abs(pm)
            return m, 0.0, err + len(parts) * EPS * magnitude
        shape = np.shape(t)
        e = np.max(np.stack([np.broadcast_to(p[1], shape) for p in parts]), axis=0)
        m = 0.0
        err = 0.0
        magnitude = 0.0
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
        parts = [_fold(*_evaluate(a, t, t_err, memo), threshold=1e100) for a in node.args]
        if len(parts) == 2 and np.ndim(parts[0][0]) == 0 and np.ndim(parts[0][2]) == 0 and np.ndim(parts[0][1]) == 0:
            return _fold(*_scaled(parts[0], parts[1]))
        m = parts[0][0]
        e = parts[0][1]
        for pm, pe, _ in parts[1:]:
            m = m * pm
            e = e + pe
        bounds = [np.abs(qm) + qerr for qm, _, qerr in parts]
        err = None
        for i, (_, _, perr) in enumerate(parts):
            others = None
            for j, bound in enumerate(bounds):
                if j != i:
                    others = bound if others is None else others * bound
            term = perr * others
            err = term if err is None else err + term
        err = err + len(parts) * EPS * np.abs(m)
        return _fold(m, e, err)
    if op == "ipow":
        n = int(node.value)
        # fold so that |m|^n stays below the float range
        bm, be, berr = _fold(*_evaluate(node.args[0], t, t_err, memo), threshold=math.exp(300.0 / max(abs(n), 1)))
        if n == 0:
            return 1.0, 0.0, 0.0
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
            # (|m| + d)^(n-1), without a power call for the common squares
            bound = 1.0 if n == 1 else np.abs(bm) + berr
            if n > 2:
                bound = bound ** (n - 1)
            err = n * bound * berr + 2 * n * EPS * np.abs(m)
        return _fold(m, be * n, err)
    if op in ("exp", "expm1"):
        am, ae, aerr = _evaluate(node.args[0], t, t_err, memo)
        if _unscaled(ae):
            value, value_err = am, aerr
        else:
            value = plain(am, ae)
            with np.errstate(over="ignore", invalid="ignore"):
                value_err = plain(aerr, ae)
        return _exp_of(value, value_err, minus_one=(op == "expm1"))
    if op in ("log", "log1p"):
        am, ae, aerr = _evaluate(node.args[0], t, t_err, memo)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            unscaled = _unscaled(ae)
            if op == "log1p" and unscaled:
                value = np.log1p(am)
                base = 1.0 + am
            elif op == "log1p":
                scaled = ae > 0
                # log1p(m e^E) = E + log(m) + log1p(e^-E / m) for the folded case
                m_plain = np.where(scaled, 0.0, am)
                value = np.where(scaled, ae + np.log(np.abs(am)) + np.log1p(np.exp(-ae) / am), np.log1p(m_plain))
                base = np.where(scaled, np.abs(am), 1.0 + am)
            else:
                value = np.log(am) if unscaled else ae + np.log(am)
                base = np.abs(am)
            # |log(b + d) - log(b)| <= -log1p(-d / b) when d < b
            ratio = aerr / base
            if _within(ratio, 1 - EPS) and np.ndim(ratio):  # ratio >= 0: all below 1 - eps
                err = -np.log1p(-ratio)
            else:
                err = np.where(ratio < 1, -np.log1p(-np.minimum(ratio, 1 - EPS)), np.inf)
            err = err + LIBM_ULPS * EPS * np.abs(value)
            if not unscaled:
                err = err + EPS * np.abs(ae)
        return value, 0.0, err
    if op == "abs":
        am, ae, aerr = _evaluate(node.args[0], t, t_err, memo)
        return np.abs(am), ae, aerr
    if op in ("min", "max"):
        parts = [_evaluate(a, t, t_err, memo) for a in node.args]
        if all(_unscaled(p[1]) for p in parts):
            # min and max are 1-Lipschitz in the sup norm: the error is at most the largest one
            pick = np.minimum if op == "min" else np.maximum
            m, err = parts[0][0], parts[0][2]
            for pm, _, perr in parts[1:]:
                m, err = pick(m, pm), np.maximum(err, perr)
            return m, 0.0, err
        shape = np.shape(t)
        full = [tuple(np.broadcast_to(x, shape) for x in p) for p in parts]
        values = np.stack([plain(p[0], p[1]) for p in full])
        pick = np.argmin(values, axis=0) if op == "min" else np.argmax(values, axis=0)
        m = np.choose(pick, [p[0] for p in full])
        e = np.choose(pick, [p[1] for p in full])
        # min and max are 1-Lipschitz in the sup norm: the error is at most the largest one
        with np.errstate(over="ignore", invalid="ignore"):
            errs = np.stack([plain(p[2], p[1]) for p in full])
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
