"""Exact moments of an estimator for one pair (p, q): mean, variance, both KLs, biases."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy import special

from verify.exact.evaluate import EPS, Node, T, compile_estimator, constant_shift, square, _to_node
from verify.exact.families import Family, same_support
from verify.exact.integrate import Integral, categorical_mean_and_variance, expectation
import sympy as sp

__all__ = ["Moments", "moments", "kl_divergences", "closed_form_kl", "JSON_KEYS"]

JSON_KEYS = ("estimator", "p", "q", "mean", "mean_abs_error", "variance", "variance_abs_error",
             "kl_qp", "kl_pq", "bias_qp", "bias_pq", "relative_bias_qp", "relative_bias_pq")
# Ulps of the sum of term magnitudes allowed for a closed-form KL (digamma, gammaln and
# betaln from scipy are within a few ulps; 32 leaves a margin).
CLOSED_FORM_ULPS = 32.0

_KL_QP_NODE = _to_node(-T)                 # E_q[-t] = KL(q||p)
_KL_PQ_NODE = _to_node(T * sp.exp(T))      # E_q[r t] = KL(p||q)


@dataclass(frozen=True)
class Moments:
    """E_q[f(r)] and Var_q[f(r)] with absolute error bounds, and bias against both KLs.

    Infinite moments are ``math.inf`` (a mean may be -inf, or nan when it diverges both
    ways); a relative bias with a zero KL is nan.  ``kl_qp_abs_error`` and
    ``kl_pq_abs_error`` are kept for cross-checks; :meth:`as_json` gives the issue's keys.
    """

    p: str
    q: str
    mean: float
    mean_abs_error: float
    variance: float
    variance_abs_error: float
    kl_qp: float
    kl_pq: float
    bias_qp: float
    bias_pq: float
    relative_bias_qp: float
    relative_bias_pq: float
    kl_qp_abs_error: float = 0.0
    kl_pq_abs_error: float = 0.0

    def as_json(self, estimator: str) -> dict:
        """The issue's JSON object: non-finite numbers as "inf"/"-inf", undefined as null."""
        out = {"estimator": estimator}
        for key in JSON_KEYS[1:]:
            out[key] = _json_number(getattr(self, key))
        return out


def _json_number(value):
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


# ----------------------------------------------------------------------------------
# closed-form KL(a||b)


def _closed(a: Family, b: Family):
    """(KL(a||b), error bound) in closed form, or None where there is none."""
    if a.name != b.name or a.name in ("mixture", "t", "categorical"):
        return None
    A, B = a.params, b.params
    if a.name == "norm":
        log_w = 2 * (math.log(A["scale"]) - math.log(B["scale"]))
        delta = (A["loc"] - B["loc"]) / B["scale"]
        variance_part = math.expm1(log_w) - log_w
        value = 0.5 * (variance_part + delta * delta)
        size = abs(math.expm1(log_w)) + abs(log_w) + delta * delta
    elif a.name == "laplace":
        distance = abs(A["loc"] - B["loc"])
        x = math.log(A["scale"]) - math.log(B["scale"]) - distance / A["scale"]
        value = (math.expm1(x) - x) + distance * (1 / B["scale"] - 1 / A["scale"])
        size = abs(math.expm1(x)) + abs(x) + distance / B["scale"] + distance / A["scale"]
    elif a.name == "poisson":
        log_rho = math.log(A["mu"]) - math.log(B["mu"])
        rho = A["mu"] / B["mu"]
        value = B["mu"] * (rho * log_rho - math.expm1(log_rho))
        size = B["mu"] * (rho * abs(log_rho) + abs(math.expm1(log_rho)) + 1)
    elif a.name == "gamma":
        a1, a2, t1, t2 = A["a"], B["a"], A["scale"], B["scale"]
        log_theta = math.log(t1) - math.log(t2)
        terms = [(a1 - a2) * special.digamma(a1), -special.gammaln(a1), special.gammaln(a2),
                 a1 * (math.expm1(log_theta) - log_theta), (a1 - a2) * log_theta]
        value = math.fsum(terms)
        size = sum(abs(x) for x in terms) + a1 * (abs(math.expm1(log_theta)) + abs(log_theta))
    elif a.name == "beta":
        a1, b1, a2, b2 = A["a"], A["b"], B["a"], B["b"]
        terms = [special.betaln(a2, b2), -special.betaln(a1, b1), (a1 - a2) * special.digamma(a1),
                 (b1 - b2) * special.digamma(b1), (a2 - a1 + b2 - b1) * special.digamma(a1 + b1)]
        value = math.fsum(terms)
        size = sum(abs(x) for x in terms)
    else:
        return None
    return Integral(max(value, 0.0), CLOSED_FORM_ULPS * EPS * (size + 1))


def closed_form_kl(p: Family, q: Family):
    """(KL(q||p), KL(p||q)) as Integrals in closed form, or None."""
    qp, pq = _closed(q, p), _closed(p, q)
    if qp is None or pq is None:
        return None
    return qp, pq


def kl_divergences(p: Family, q: Family, method: str = "auto"):
    """(KL(q||p), KL(p||q)) as Integrals: closed form when one exists (method "auto"),
    else (or with method "quadrature") by the same engine as the moments."""
    same_support(p, q)
    if p.name == "categorical":
        # the exact sums; cached on q for the same p (a vocabulary is summed once, not per estimator)
        key = (id(p), id(p.logits), id(q.logits), method)
        cached = q.__dict__.get("_kl_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        result = expectation(p, q, _KL_QP_NODE), expectation(p, q, _KL_PQ_NODE)
        object.__setattr__(q, "_kl_cache", (key, result))
        return result
    if method == "auto":
        closed = closed_form_kl(p, q)
        if closed is not None:
            return closed
    return expectation(p, q, _KL_QP_NODE), expectation(p, q, _KL_PQ_NODE)


# ----------------------------------------------------------------------------------


def _relative(bias, kl):
    if kl == 0 or math.isnan(bias) or math.isnan(kl):
        return math.nan
    if math.isinf(kl):
        return math.nan if math.isinf(bias) else -1.0
    return bias / kl


def _bias(mean, kl):
    if math.isinf(mean) and math.isinf(kl):
        return math.nan if mean == kl else mean
    return mean - kl


def _identical(node: Node, p: Family) -> Moments:
    """p = q: r = 1 everywhere, so f(r) is the constant f(1)."""
    from verify.exact.evaluate import evaluate, plain

    m, e, err = evaluate(node, np.zeros(1), np.zeros(1))
    value, error = float(plain(m, e)[0]), float(plain(err, e)[0])
    nan = math.nan
    return Moments(p=p.spec, q=p.spec, mean=value, mean_abs_error=error, variance=0.0,
                   variance_abs_error=0.0, kl_qp=0.0, kl_pq=0.0, bias_qp=value, bias_pq=value,
                   relative_bias_qp=nan, relative_bias_pq=nan)


def moments_of_node(node: Node, p: Family, q: Family) -> Moments:
    same_support(p, q)
    if p.spec == q.spec and not p.discrete:
        return _identical(node, p)
    fast = categorical_mean_and_variance(p, q, node) if q.name == "categorical" else None
    if fast is not None:
        mean, second = fast
    else:
        mean = expectation(p, q, node)
    if fast is not None:
        variance, variance_err = max(second.value, 0.0), second.error
    elif mean.finite:
        second = expectation(p, q, square(constant_shift(node, mean.value)))
        if second.finite:
            # E[(f - c)^2] = Var + (mean - c)^2 with |mean - c| <= mean error
            variance, variance_err = max(second.value, 0.0), second.error + mean.error ** 2
        else:
            variance, variance_err = math.inf, 0.0
    else:
        variance, variance_err = math.inf, 0.0
    kl_qp, kl_pq = kl_divergences(p, q)
    bias_qp, bias_pq = _bias(mean.value, kl_qp.value), _bias(mean.value, kl_pq.value)
    return Moments(
        p=p.spec, q=q.spec,
        mean=float(mean.value), mean_abs_error=float(mean.error),
        variance=float(variance), variance_abs_error=float(variance_err),
        kl_qp=float(kl_qp.value), kl_pq=float(kl_pq.value),
        bias_qp=float(bias_qp), bias_pq=float(bias_pq),
        relative_bias_qp=float(_relative(bias_qp, kl_qp.value)),
        relative_bias_pq=float(_relative(bias_pq, kl_pq.value)),
        kl_qp_abs_error=float(kl_qp.error), kl_pq_abs_error=float(kl_pq.error),
    )


def moments(expr, p: Family, q: Family) -> Moments:
    """Exact moments of f = ``expr`` (a checked sympy expression in R) under x ~ q."""
    return moments_of_node(compile_estimator(expr), p, q)
