"""Finite or infinite, decided from the families' tails and the estimator's growth.

Each family knows the asymptotic form of its log-density at each end of its support:
at an infinite end, in z = |x|, a combination of z^2, z log z, z and log z (Gaussian,
Poisson, exponential, power law); at a finite end (gamma's base, beta's 0 and 1), a
power of the distance, written in L = -log(distance) as a multiple of L.  Mixtures take
their heaviest component.  Then t = log p - log q has a known leading term at each end,
the estimator's growth in t is read from its expression tree (``growth``: a short
asymptotic expansion, sum of c e^(a s) s^b (log s)^l in s = |t|), and whether
q |f|^k is integrable follows from the exponents alone, exactly (coefficients are
``Fraction``s of the parameters), never from a fitted slope.

An answer of None means the analysis does not apply (an expression the expansion cannot
follow); the caller then says so instead of guessing.
"""
from __future__ import annotations

import math
from fractions import Fraction

from verify.layers.exact.evaluate import Node

__all__ = ["growth", "end_descriptor", "decide", "decide_end", "ends", "BASIS", "CONSTANT_KEY"]

# Asymptotic scales of an exponent, from the largest down (z -> infinity).
BASIS = ("z2", "zlogz", "z", "logz", "loglogz", "logloglogz")
MAX_TERMS = 8


def _fraction(value):
    return Fraction(value) if isinstance(value, (int, float)) and math.isfinite(value) else value


# ------------------------------------------------------------------------------------
# the estimator's growth: sums of c e^(a s) s^b (log s)^l, s = |t| -> infinity


class _Series:
    """terms: list of (coef, key) with key = (a, b, l), sorted by key descending; ``rest``
    is the key of an upper bound on everything dropped (None: nothing was dropped)."""

    def __init__(self, terms, rest=None):
        merged = {}
        for coef, key in terms:
            merged[key] = merged.get(key, 0) + coef
        items = sorted(((c, k) for k, c in merged.items() if c != 0), key=lambda ck: ck[1], reverse=True)
        if rest is not None:
            items = [(c, k) for c, k in items if k > rest]
        if len(items) > MAX_TERMS:
            dropped = items[MAX_TERMS][1]
            rest = dropped if rest is None else max(rest, dropped)
            items = items[:MAX_TERMS]
        self.terms, self.rest = items, rest

    @property
    def lead(self):
        return self.terms[0] if self.terms else None


CONSTANT_KEY = (Fraction(0), Fraction(0), Fraction(0))  # the key (a, b, l) of a constant term
_VANISHING_KEY = (-math.inf, 0, 0)  # decays faster than any exponential


def _add_keys(k1, k2):
    return tuple(a + b for a, b in zip(k1, k2))


def _neg_key(k):
    return tuple(-a for a in k)


def _series_product(x: _Series, y: _Series):
    terms = [(c1 * c2, _add_keys(k1, k2)) for c1, k1 in x.terms for c2, k2 in y.terms]
    rests = []
    if x.rest is not None and y.terms:
        rests.append(_add_keys(x.rest, y.terms[0][1]))
    if y.rest is not None and x.terms:
        rests.append(_add_keys(y.rest, x.terms[0][1]))
    if x.rest is not None and y.rest is not None:
        rests.append(_add_keys(x.rest, y.rest))
    return _Series(terms, max(rests) if rests else None)


def _constant_series(value):
    return _Series([(value, CONSTANT_KEY)]) if value != 0 else _Series([])


def growth(node: Node, direction: int):
    """The expansion of f as t -> direction * infinity, or None when it cannot be followed.
    A super-exponential f gives the string "superexponential"."""
    try:
        series = _growth(node, direction, {})
    except _CannotFollow:
        return None
    except _Superexponential:
        return "superexponential"
    return series


class _CannotFollow(Exception):
    pass


class _Superexponential(Exception):
    pass


def _growth(node, direction, memo):
    key = id(node)
    if key not in memo:
        memo[key] = _growth_node(node, direction, memo)
    return memo[key]


def _lead_or_unknown(series):
    if not series.terms or (series.rest is not None and series.rest >= series.terms[0][1]):
        raise _CannotFollow
    return series.terms[0]


def _growth_node(node, direction, memo):
    op = node.op
    if op == "t":
        return _Series([(Fraction(direction), (Fraction(0), Fraction(1), Fraction(0)))])
    if op == "const":
        return _constant_series(_fraction(node.value))
    args = [_growth(a, direction, memo) for a in node.args]
    if op == "add":
        terms = [t for s in args for t in s.terms]
        rests = [s.rest for s in args if s.rest is not None]
        return _Series(terms, max(rests) if rests else None)
    if op == "mul":
        out = args[0]
        for s in args[1:]:
            out = _series_product(out, s)
        return out
    if op == "ipow":
        n = int(node.value)
        base = args[0]
        if n == 0:
            return _constant_series(Fraction(1))
        if n < 0:
            coef, k = _lead_or_unknown(base)
            # 1/(L (1 + e)) = (1/L)(1 - e + ...): first order only
            inverse = _Series([(1 / coef, _neg_key(k))] + [(-c / coef / coef, _add_keys(kk, _add_keys(_neg_key(k), _neg_key(k))))
                                                             for c, kk in base.terms[1:2]],
                              rest=_inverse_rest_key(base, k))
            base, n = inverse, -n
        out = base
        for _ in range(n - 1):
            out = _series_product(out, base)
        return out
    if op in ("exp", "expm1"):
        return _exp_series(args[0], minus_one=(op == "expm1"))
    if op in ("log", "log1p"):
        inner = args[0]
        if op == "log1p":
            inner = _Series(inner.terms + [(Fraction(1), CONSTANT_KEY)], inner.rest)
        return _log_series(inner)
    if op == "abs":
        coef, _ = _lead_or_unknown(args[0])
        if coef < 0:
            return _Series([(-c, k) for c, k in args[0].terms], args[0].rest)
        return args[0]
    if op in ("min", "max"):
        best = args[0]
        for other in args[1:]:
            diff = _Series(best.terms + [(-c, k) for c, k in other.terms],
                           max([r for r in (best.rest, other.rest) if r is not None], default=None))
            coef, _ = _lead_or_unknown(diff)
            if (coef < 0) == (op == "max"):
                best = other
        return best
    raise _CannotFollow


def _inverse_rest_key(base, k):
    second = base.terms[1][1] if len(base.terms) > 1 else None
    candidates = []
    if len(base.terms) > 2:
        candidates.append(_add_keys(base.terms[2][1], _add_keys(_neg_key(k), _neg_key(k))))
    if second is not None:
        candidates.append(_add_keys(_add_keys(second, second), _add_keys(_neg_key(k), _add_keys(_neg_key(k), _neg_key(k)))))
    if base.rest is not None:
        candidates.append(_add_keys(base.rest, _add_keys(_neg_key(k), _neg_key(k))))
    return max(candidates) if candidates else None


def _exp_series(arg: _Series, minus_one: bool):
    growing = [(c, k) for c, k in arg.terms if k > CONSTANT_KEY]
    constant = sum((c for c, k in arg.terms if k == CONSTANT_KEY), Fraction(0))
    decaying = [(c, k) for c, k in arg.terms if k < CONSTANT_KEY]
    if arg.rest is not None and arg.rest >= CONSTANT_KEY:
        raise _CannotFollow
    a, b = Fraction(0), Fraction(0)
    for c, (ka, kb, kl) in growing:
        if ka > 0 or kb > 1 or (kb == 1 and kl > 0):
            if c > 0:
                raise _Superexponential
            return _Series([], rest=_VANISHING_KEY)  # decays faster than any exponential
        if ka == 0 and kb == 1 and kl == 0:
            a += c
        elif ka == 0 and kb == 0 and kl == 1:
            b += c  # e^(c log s) = s^c
        else:
            raise _CannotFollow  # e^(c s^b), 0 < b < 1, and the like
    factor = Fraction(math.exp(constant)) if constant else Fraction(1)
    lead_key = (a, b, Fraction(0))
    if not decaying and arg.rest is None:
        terms = [(factor, lead_key)]
        rest = None
    else:
        # e^(o(1)) = 1 + o(1): the first decaying term gives the next order
        small = decaying[0][1] if decaying else arg.rest
        terms = [(factor, lead_key)] + [(factor * c, _add_keys(lead_key, k)) for c, k in decaying[:1]]
        second = _add_keys(small, small)
        others = [k for _, k in decaying[1:2]] + ([arg.rest] if arg.rest is not None else [])
        rest = _add_keys(lead_key, max([second] + others))
    if minus_one:
        terms = terms + [(Fraction(-1), CONSTANT_KEY)]
    return _Series(terms, rest)


def _log_series(inner: _Series):
    coef, k = _lead_or_unknown(inner)
    if coef <= 0:
        raise _CannotFollow
    ka, kb, kl = k
    if kl != 0:
        raise _CannotFollow
    terms = []
    if ka != 0:
        terms.append((ka, (Fraction(0), Fraction(1), Fraction(0))))
    if kb != 0:
        terms.append((kb, (Fraction(0), Fraction(0), Fraction(1))))
    if coef != 1:
        terms.append((Fraction(math.log(coef)), CONSTANT_KEY))
    # log(1 + e) with e = rest / lead -> 0: e to first order
    eps = [(c / coef, _add_keys(kk, _neg_key(k))) for c, kk in inner.terms[1:]]
    rest_keys = []
    if eps:
        terms.append(eps[0])
        rest_keys.append(_add_keys(eps[0][1], eps[0][1]))
        if len(eps) > 1:
            rest_keys.append(eps[1][1])
    if inner.rest is not None:
        rest_keys.append(_add_keys(inner.rest, _neg_key(k)))
    return _Series(terms, max(rest_keys) if rest_keys else None)


# ------------------------------------------------------------------------------------
# the families' ends


def ends(support: str):
    """The ends of a support: ("inf", +1), ("inf", -1) or ("point", x0, side)."""
    if support == "real":
        return [("inf", 1), ("inf", -1)]
    if support == "unit":
        return [("point", 0.0, 1), ("point", 1.0, -1)]
    if support.startswith("halfline"):
        return [("point", float(support[len("halfline("):-1]), 1), ("inf", 1)]
    if support == "counts":
        return [("inf", 1)]
    return []


def _dominant(descriptors):
    return max(descriptors, key=lambda d: tuple(d.get(b, 0) for b in BASIS))


def end_descriptor(family, end):
    """Coefficients (on BASIS, in z = |x| or L = -log|x - x0|) of the leading behaviour of
    the family's log-density at ``end``; constants are left out."""
    n, P = family.name, family.params
    if n == "mixture":
        return _dominant([end_descriptor(c, end) for c in family.components])
    if end[0] == "inf":
        sign = end[1]
        if n == "norm":
            s2 = _fraction(P["scale"]) ** 2
            return {"z2": -1 / (2 * s2), "z": sign * _fraction(P["loc"]) / s2}
        if n == "laplace":
            return {"z": -1 / _fraction(P["scale"])}
        if n == "t":
            return {"logz": -(_fraction(P["df"]) + 1)}
        if n == "gamma":
            return {"z": -1 / _fraction(P["scale"]), "logz": _fraction(P["a"]) - 1}
        if n == "poisson":
            return {"zlogz": Fraction(-1), "z": 1 + math.log(P["mu"]), "logz": Fraction(-1, 2)}
        raise ValueError(n)
    x0 = end[1]
    if n == "gamma" and x0 == P["loc"]:
        return {"z": -(_fraction(P["a"]) - 1)}
    if n == "beta" and x0 in (0.0, 1.0):
        return {"z": -(_fraction(P["a"] if x0 == 0.0 else P["b"]) - 1)}
    return {}  # a point inside the support: the density is positive and smooth there


def _leading_basis(coeffs):
    for b in BASIS:
        c = coeffs.get(b, 0)
        if c != 0:
            return b, c
    return None, 0


def _integrable(exponent) -> bool:
    for b in ("z2", "zlogz", "z"):
        c = exponent.get(b, 0)
        if c != 0:
            return c < 0
    for b in ("logz", "loglogz", "logloglogz"):
        c = exponent.get(b, 0)
        if c != -1:
            return c < -1
    return False


def _decay_rate(exponent, end):
    """The integrand's exponential decay rate in the quadrature variable u (|u| ~ log z at an
    infinite end, ~ L at a finite one), or None when it decays faster than exponentially."""
    if end[0] == "inf":
        if any(exponent.get(b, 0) != 0 for b in ("z2", "zlogz", "z")):
            return None
        return float(-(exponent.get("logz", 0) + 1)) or None
    if any(exponent.get(b, 0) != 0 for b in ("z2", "zlogz")):
        return None
    return float(-exponent.get("z", 0)) or None


def decide(p, q, node, support):
    """{end: decision} for E_q[f] over ``support`` (see decide_end), f given by ``node``."""
    series = {1: growth(node, 1), -1: growth(node, -1)}
    return {end: decide_end(p, q, end, series) for end in ends(support)}


def decide_end(p, q, end, series, power=1):
    """("finite", decay rate in u or None) or ("infinite", sign of f there) for the integral of q |f|^power
    near ``end``; None when undecided.  ``series``: growth(node, +1) and (node, -1)."""
    dp, dq = end_descriptor(p, end), end_descriptor(q, end)
    t = {b: dp.get(b, 0) - dq.get(b, 0) for b in BASIS}
    lead_basis, lead_coef = _leading_basis(t)
    exponent = dict(dq)
    if end[0] == "point":
        exponent["z"] = exponent.get("z", 0) - 1  # dx = e^-L dL
    if lead_basis is None:
        return "finite", _decay_rate(exponent, end)  # t tends to a constant: f is bounded there
    direction = 1 if lead_coef > 0 else -1
    s = series[direction]
    if s is None:
        return None
    if s == "superexponential":
        return "infinite", 1.0
    if not s.terms:
        if s.rest is None or s.rest[0] == -math.inf:
            return "finite", _decay_rate(exponent, end)
        coef, key = 1, s.rest  # an upper bound only: finite can still be shown
        bound_only = True
    else:
        coef, key = s.terms[0]
        bound_only = s.rest is not None and s.rest >= key
        if bound_only:
            key = s.rest
    a, b, l = (power * x for x in key)
    # a s with s = |t|
    for basis in ("z2", "zlogz", "z", "logz"):
        exponent[basis] = exponent.get(basis, 0) + a * direction * t.get(basis, 0)
    # b log s and l log log s
    if lead_basis == "z2":
        exponent["logz"] = exponent.get("logz", 0) + 2 * b
        exponent["loglogz"] = exponent.get("loglogz", 0) + l
    elif lead_basis == "zlogz":
        exponent["logz"] = exponent.get("logz", 0) + b
        exponent["loglogz"] = exponent.get("loglogz", 0) + b + l
    elif lead_basis == "z":
        exponent["logz"] = exponent.get("logz", 0) + b
        exponent["loglogz"] = exponent.get("loglogz", 0) + l
    else:
        exponent["loglogz"] = exponent.get("loglogz", 0) + b
        exponent["logloglogz"] = exponent.get("logloglogz", 0) + l
    if _integrable(exponent):
        return "finite", _decay_rate(exponent, end)
    if bound_only:
        return None
    return "infinite", float(1 if coef > 0 else -1)
