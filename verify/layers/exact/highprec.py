"""Far tails in mpmath: where float64 log-densities are too uncertain (t = log p - log q is
the difference of two numbers near x^2) or the tail decays too slowly to truncate.

Values are carried as (sign, log|value|) so that r = e^t for t ~ 1e80 is still a number,
and the working precision grows with the size of the log-densities, so that
log q + t (= log p) keeps its digits.  The tail integral is computed by two rules
(tanh-sinh and Gauss-Legendre, mpmath.quad); their disagreement plus both error
estimates, times a safety factor, is the error bound.
"""
from __future__ import annotations

import mpmath as mp

from verify.layers.exact.evaluate import Node

__all__ = ["tail_integral"]

BASE_DIGITS = 30
SAFETY = 10.0
LAST_W = 90
# Degree limit of both rules (the integrand in w is e^-w times a slowly varying factor:
# both converge long before; a rule stopped early shows up in their disagreement).
MAX_DEGREE = 6


def _to_mpf(value):
    return mp.mpf(repr(float(value)))


_NORMALIZING_CONSTANTS = {}


def _normalizing_constant(family, compute):
    """A family's normalizing constant at the working precision, computed once."""
    key = (id(family), family.spec, mp.mp.prec)
    if key not in _NORMALIZING_CONSTANTS:
        if len(_NORMALIZING_CONSTANTS) > 256:
            _NORMALIZING_CONSTANTS.clear()
        _NORMALIZING_CONSTANTS[key] = compute()
    return _NORMALIZING_CONSTANTS[key]


def logpdf_mp(family, x):
    n, P = family.name, family.params
    if n == "norm":
        loc, s = _to_mpf(P["loc"]), _to_mpf(P["scale"])
        return -((x - loc) / s) ** 2 / 2 - mp.log(s) - mp.log(2 * mp.pi) / 2
    if n == "laplace":
        loc, s = _to_mpf(P["loc"]), _to_mpf(P["scale"])
        return -abs(x - loc) / s - mp.log(2 * s)
    if n == "t":
        df, loc, s = _to_mpf(P["df"]), _to_mpf(P["loc"]), _to_mpf(P["scale"])
        c = _normalizing_constant(family, lambda: mp.loggamma((df + 1) / 2) - mp.loggamma(df / 2) - mp.log(df * mp.pi) / 2
                      - mp.log(s))
        return c - (df + 1) / 2 * mp.log1p(((x - loc) / s) ** 2 / df)
    if n == "gamma":
        a, loc, s = _to_mpf(P["a"]), _to_mpf(P["loc"]), _to_mpf(P["scale"])
        y = x - loc
        if y <= 0:
            return mp.ninf
        return (a - 1) * mp.log(y / s) - y / s - _normalizing_constant(family, lambda: mp.loggamma(a) + mp.log(s))
    if n == "beta":
        a, b = _to_mpf(P["a"]), _to_mpf(P["b"])
        if not 0 < x < 1:
            return mp.ninf
        return (a - 1) * mp.log(x) + (b - 1) * mp.log1p(-x) - _normalizing_constant(family, lambda: mp.log(mp.beta(a, b)))
    if n == "mixture":
        parts = [mp.log(_to_mpf(w)) + logpdf_mp(c, x) for w, c in zip(family.weights, family.components)]
        top = max(parts)
        if top == mp.ninf:
            return top
        return top + mp.log(mp.fsum(mp.exp(v - top) for v in parts))
    raise ValueError(n)


# (sign, log|v|) arithmetic ---------------------------------------------------------

_SIGNED_LOG_ZERO = (0, mp.ninf)


def _to_signed_log(value):
    value = mp.mpf(value)
    if value == 0:
        return _SIGNED_LOG_ZERO
    return (1 if value > 0 else -1, mp.log(abs(value)))


def _from_signed_log(v):
    sign, la = v
    return mp.mpf(0) if sign == 0 else sign * mp.exp(la)


def _add_signed_logs(values):
    live = [v for v in values if v[0] != 0]
    if not live:
        return _SIGNED_LOG_ZERO
    top = max(v[1] for v in live)
    total = mp.fsum(v[0] * mp.exp(v[1] - top) for v in live)
    return _SIGNED_LOG_ZERO if total == 0 else _signed_log_of_scaled(total, top)


def _signed_log_of_scaled(total, top):
    return (1 if total > 0 else -1, top + mp.log(abs(total)))


def _evaluate_signed_log(node: Node, t, memo):
    key = id(node)
    if key in memo:
        return memo[key]
    op = node.op
    if op == "t":
        out = _to_signed_log(t)
    elif op == "const":
        out = _to_signed_log(_to_mpf(node.value))
    elif op == "add":
        out = _add_signed_logs([_evaluate_signed_log(a, t, memo) for a in node.args])
    elif op == "mul":
        parts = [_evaluate_signed_log(a, t, memo) for a in node.args]
        sign = 1
        for s, _ in parts:
            sign *= s
        out = _SIGNED_LOG_ZERO if sign == 0 else (sign, mp.fsum(la for _, la in parts))
    elif op == "ipow":
        s, la = _evaluate_signed_log(node.args[0], t, memo)
        n = int(node.value)
        if s == 0:
            out = _SIGNED_LOG_ZERO if n > 0 else (1, mp.inf)
        else:
            out = (s ** (n % 2) if s < 0 else 1, la * n)
    elif op in ("exp", "expm1"):
        v = _from_signed_log(_evaluate_signed_log(node.args[0], t, memo))
        if op == "exp":
            out = (1, v)
        elif v > 40:
            out = (1, v + mp.log1p(-mp.exp(-v)))
        elif v < -3 * mp.mp.dps - 50:
            out = (-1, mp.mpf(0))  # -1 + e^v is -1 at the working precision (no exp of a huge argument)
        else:
            out = _to_signed_log(mp.expm1(v))
    elif op in ("log", "log1p"):
        s, la = _evaluate_signed_log(node.args[0], t, memo)
        if op == "log1p":
            s, la = _add_signed_logs([(s, la), (1, mp.mpf(0))])
        if s <= 0:
            raise ValueError("log of a non-positive number")
        out = _to_signed_log(la)
    elif op == "abs":
        s, la = _evaluate_signed_log(node.args[0], t, memo)
        out = (abs(s), la)
    elif op in ("min", "max"):
        parts = [_evaluate_signed_log(a, t, memo) for a in node.args]
        key_fn = lambda v: (v[0], v[1] if v[0] > 0 else -v[1])  # noqa: E731
        out = min(parts, key=key_fn) if op == "min" else max(parts, key=key_fn)
    else:
        raise ValueError(op)
    memo[key] = out
    return out


def log_integrand(p, q, node, mapping, u):
    """(sign, log|q J f|) at u in mpmath, with enough digits for log q + t."""
    u = mp.mpf(u)
    with mp.workdps(15):  # only the size of the log-densities: a few digits do
        x, log_j = mapping.point_mp(u)
        size = abs(logpdf_mp(q, x)) + abs(logpdf_mp(p, x)) + 1
    if not mp.isfinite(size):
        # the point is beyond 15 digits' resolution (1 - x on (0, 1) below 1e-15):
        # enough digits to resolve e^-|u| as well
        size = mp.mpf(10) ** int(abs(u) / 2.3 + 1)
    digits = BASE_DIGITS + int(mp.log10(size)) + 5
    with mp.workdps(digits):
        x, log_j = mapping.point_mp(u)
        logq = logpdf_mp(q, x)
        if logq == mp.ninf:
            return _SIGNED_LOG_ZERO
        logp = logpdf_mp(p, x)
        t = logp - logq
        sign, la = _evaluate_signed_log(node, t, {})
        return sign, la + logq + log_j


def tail_integral(p, q, node, mapping, start, direction, rate, breaks=()):
    """(value, error bound) of the integral of q J f over u from ``start`` outwards; the
    integrand decays like exp(-rate |u|) (rate from the tail analysis).  In w = rate |u -
    start| the integral runs to w = LAST_W; beyond, the integrand is below exp(-LAST_W)
    of its value at w = 0 to the analysis' order and is bounded by that, times SAFETY."""
    def g(w):
        u = start + direction * w / rate
        sign, la = log_integrand(p, q, node, mapping, u)
        return sign * mp.exp(la) / rate if sign else mp.mpf(0)

    with mp.workdps(BASE_DIGITS):
        points = sorted({mp.mpf(0), *[mp.mpf(x) for x in (1, 4, 16, 48, LAST_W)],
                         *[mp.mpf(rate * (abs(b) - abs(start))) for b in breaks
                           if 0 < rate * (abs(b) - abs(start)) < LAST_W]})
        ts, ts_err = mp.quad(g, points, error=True, maxdegree=MAX_DEGREE)
        gl, gl_err = mp.quad(g, points, method="gauss-legendre", error=True, maxdegree=MAX_DEGREE)
        beyond = SAFETY * max(abs(g(mp.mpf(0))), abs(g(mp.mpf(LAST_W)))) * mp.exp(-LAST_W)
        error = SAFETY * (abs(ts - gl) + ts_err + gl_err) + beyond + abs(ts) * mp.mpf(10) ** (-BASE_DIGITS + 5)
        return float(ts), float(error)
