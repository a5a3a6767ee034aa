"""Exact moments of an estimator for one pair (p, q): mean, variance, both KLs, biases."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy import special

from verify.core.dtypes import EPS
from verify.errors import UsageError
from verify.layers.exact.evaluate import Node, LOG_RATIO, compile_estimator, constant_shift, evaluate, plain, square, _to_node
from verify.layers.exact.families import Family, common_support, mass_outside
from verify.layers.exact.integral import ExactError, Integral
from verify.layers.exact.integrate import expectation
from verify.layers.exact.sums import categorical_mean_and_variance
from verify.layers.exact.tails import CONSTANT_KEY, growth

__all__ = ["Moments", "moments", "kl_divergences", "closed_form_kl", "JSON_KEYS"]

JSON_KEYS = ("estimator", "p", "q", "mean", "mean_abs_error", "variance", "variance_abs_error",
             "kl_qp", "kl_pq", "bias_qp", "bias_pq", "relative_bias_qp", "relative_bias_pq")
# Every reported value, each with "<value>_abs_error" beside it in the JSON.
VALUE_KEYS = ("mean", "variance", "std", "kl_qp", "kl_pq", "bias_qp", "bias_pq", "relative_bias_qp",
              "relative_bias_pq", "std_over_kl_qp", "std_over_kl_pq", "p_mass_outside_q", "q_mass_outside_p")
# Ulps of the sum of term magnitudes allowed for a closed-form KL (digamma, gammaln and
# betaln from scipy are within a few ulps; 32 leaves a margin).
CLOSED_FORM_ULPS = 32.0
# Relative accuracy allowed for a scipy.special CDF (ndtr, stdtr, gammainc, betainc are
# within ~1e-15 relative; 1e-13 leaves a margin).
CDF_RTOL = 1e-13

_KL_QP_NODE = _to_node(-LOG_RATIO)                 # E_q[-t] = KL(q||p)
_KL_PQ_NODE = _to_node(LOG_RATIO * sp.exp(LOG_RATIO))      # E_q[r t] = KL(p||q)


@dataclass(frozen=True)
class Moments:
    """E_q[f(r)] and Var_q[f(r)] with absolute error bounds, and bias against both KLs.

    Infinite moments are ``math.inf`` (a mean may be -inf, or nan when it diverges both
    ways); a relative bias with a zero KL is nan.  A value beyond float64 (a variance of
    10^10856927) is ``math.inf`` here with its ``log10_<key>`` and ``<key>_decimal``
    set: it is finite, and :meth:`as_json` writes it as that decimal string.
    ``p_mass_outside_q``: the target's mass where q is 0 (top-k / top-p sampling).
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
    std: float = math.nan
    std_abs_error: float = 0.0
    bias_qp_abs_error: float = 0.0
    bias_pq_abs_error: float = 0.0
    relative_bias_qp_abs_error: float = 0.0
    relative_bias_pq_abs_error: float = 0.0
    std_over_kl_qp: float = math.nan
    std_over_kl_qp_abs_error: float = 0.0
    std_over_kl_pq: float = math.nan
    std_over_kl_pq_abs_error: float = 0.0
    p_mass_outside_q: float = 0.0
    p_mass_outside_q_abs_error: float = 0.0
    q_mass_outside_p: float = 0.0
    q_mass_outside_p_abs_error: float = 0.0
    # values beyond float64: key -> (log10 of |value|, relative error bound, sign)
    beyond_float64: tuple = ()

    def big(self, key):
        for k, log10, rel, sign in self.beyond_float64:
            if k == key:
                return log10, rel, sign
        return None

    def as_json(self, estimator: str) -> dict:
        """Every value with its ``_abs_error``: non-finite numbers as "inf"/"-inf", undefined
        as null, values beyond float64 as decimal strings with ``log10_<key>``; ``infinite``
        lists the keys whose values are infinite."""
        out = {"estimator": estimator, "p": self.p, "q": self.q}
        infinite = []
        for key in VALUE_KEYS:
            big = self.big(key)
            if big is not None:
                log10, rel, sign = big
                out[key] = _decimal(log10, sign)
                out[key + "_abs_error"] = _decimal(log10 + math.log10(rel), 1) if rel > 0 else 0.0
                out["log10_" + key] = log10
                out["log10_" + key + "_abs_error"] = math.log10(1 + rel)
                continue
            value = getattr(self, key)
            out[key] = _json_number(value)
            undefined = isinstance(value, float) and math.isnan(value)
            out[key + "_abs_error"] = None if undefined else _json_number(getattr(self, key + "_abs_error"))
            if isinstance(value, float) and math.isinf(value):
                infinite.append(key)
        out["infinite"] = infinite
        return out


def _decimal(log10, sign, digits=12):
    """sign * 10**log10 as an exact-looking decimal string with its exponent."""
    exponent = math.floor(log10)
    mantissa = 10 ** (log10 - exponent)
    if mantissa >= 10 - 0.5 * 10 ** (1 - digits):
        mantissa, exponent = mantissa / 10, exponent + 1
    text = f"{mantissa:.{digits - 1}f}e+{exponent}" if exponent >= 0 else f"{mantissa:.{digits - 1}f}e{exponent}"
    return ("-" if sign < 0 else "") + text


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


def _kl_closed_form(a: Family, b: Family):
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
    qp, pq = _kl_closed_form(q, p), _kl_closed_form(p, q)
    if qp is None or pq is None:
        return None
    return qp, pq


def kl_divergences(p: Family, q: Family, method: str = "auto"):
    """(KL(q||p), KL(p||q)) as Integrals: closed form when one exists (method "auto"),
    else (or with method "quadrature") by the same engine as the moments.  Over different
    supports, a KL is infinite where its first argument has mass outside the other's."""
    split = _split(p, q)
    if split.q_outside > 0 or split.p_outside > 0 or split.empty:
        inner = (None, None) if split.empty else (expectation(split.p, split.q, _KL_QP_NODE),
                                                  expectation(split.p, split.q, _KL_PQ_NODE))
        kl_qp = Integral(math.inf, 0.0) if split.q_outside > 0 or split.empty else inner[0]
        kl_pq = Integral(math.inf, 0.0) if split.p_outside > 0 or split.empty else inner[1]
        return kl_qp, kl_pq
    p, q = split.p, split.q
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
    # by quadrature: cached on q for the same p (every estimator of a pair shares them)
    key = (id(p), p.spec, method)
    cached = q.__dict__.get("_kl_cache")
    if cached is not None and cached[0] == key and cached[2] is p:
        return cached[1]
    result = expectation(p, q, _KL_QP_NODE), expectation(p, q, _KL_PQ_NODE)
    object.__setattr__(q, "_kl_cache", (key, result, p))  # a cache, not state
    return result


# ----------------------------------------------------------------------------------
# different supports


@dataclass(frozen=True)
class _Split:
    """The pair restricted to where both are positive, and the masses left outside."""

    p: Family
    q: Family
    q_outside: float       # q's mass where p = 0 (there r = 0)
    q_outside_error: float
    p_outside: float       # p's mass where q = 0 (never sampled)
    p_outside_error: float
    empty: bool = False


def _split(p: Family, q: Family) -> _Split:
    key = (id(p), id(p.logits), id(q.logits))
    cached = q.__dict__.get("_split_cache")
    if cached is not None and cached[0] == key and cached[2] is p:
        return cached[1]
    result = _make_split(p, q)
    object.__setattr__(q, "_split_cache", (key, result, p))  # a cache, not state
    return result


def _make_split(p, q):
    support = common_support(p, q)
    if p.name == "categorical":
        if p.logits.size != q.logits.size:
            raise UsageError(f"p and q must be categoricals of one size ({p.logits.size} and {q.logits.size} logits)")
        in_p, in_q = np.isfinite(p.logits), np.isfinite(q.logits)
        if np.all(in_p) and np.all(in_q):
            return _Split(p, q, 0.0, 0.0, 0.0, 0.0)
        logp, logp_err = p.logpmf()
        logq, logq_err = q.logpmf()
        both = in_p & in_q
        q_out, q_out_err = _total_mass(logq[in_q & ~in_p], logq_err[in_q & ~in_p])
        p_out, p_out_err = _total_mass(logp[in_p & ~in_q], logp_err[in_p & ~in_q])
        if not np.any(both):
            return _Split(p, q, q_out, q_out_err, p_out, p_out_err, empty=True)
        restricted = [Family("categorical", {}, f.spec, f.support, logits=f.logits[both],
                             log_normalizer=float(special.logsumexp(f.logits[np.isfinite(f.logits)])))
                      for f in (p, q)]
        return _Split(restricted[0], restricted[1], q_out, q_out_err, p_out, p_out_err)
    if p.discrete:
        return _Split(p, q, 0.0, 0.0, 0.0, 0.0)
    q_out = mass_outside(q, support)
    p_out = mass_outside(p, support)
    return _Split(p, q, q_out, CDF_RTOL * q_out, p_out, CDF_RTOL * p_out, empty=support is None)


def _total_mass(log_probabilities, errors):
    if log_probabilities.size == 0:
        return 0.0, 0.0
    terms = np.exp(log_probabilities)
    total = math.fsum(terms.tolist())
    return total, float(np.sum(terms * np.expm1(errors))) + log_probabilities.size * EPS * total


def _limit_at_zero(node: Node):
    """f(0+), the limit of f as r -> 0 (t -> -inf), from the growth analysis: a float,
    +-inf, or None when the expansion cannot follow f."""
    series = growth(node, -1)
    if series is None or isinstance(series, str):
        return None
    if not series.terms:
        return 0.0 if series.rest is None or series.rest < CONSTANT_KEY else None
    coef, key = series.terms[0]
    if key > CONSTANT_KEY:
        return math.inf if coef > 0 else -math.inf
    if key < CONSTANT_KEY:
        return 0.0
    if series.rest is not None and series.rest >= CONSTANT_KEY:
        return None
    return float(coef)


# ----------------------------------------------------------------------------------


def _relative_bias(bias, kl):
    if kl == 0 or math.isnan(bias) or math.isnan(kl):
        return math.nan
    if math.isinf(kl):
        return math.nan if math.isinf(bias) else -1.0
    return bias / kl


def _bias(mean, kl):
    if math.isinf(mean) and math.isinf(kl):
        return math.nan if mean == kl else mean
    return mean - kl


def _ratio_error(x, x_err, y, y_err):
    """A bound on |x'/y' - x/y| for |x' - x| <= x_err, |y' - y| <= y_err, y > 0."""
    if not (math.isfinite(x) and math.isfinite(y)) or y <= 0:
        return 0.0
    if y - y_err <= 0:
        return math.inf
    ratio = x / y
    corners = [(x + a) / (y + b) for a in (-x_err, x_err) for b in (-y_err, y_err)]
    return max(abs(c - ratio) for c in corners) * (1 + 4 * EPS) + 4 * EPS * abs(ratio)


def _sqrt_error(v, v_err):
    if not math.isfinite(v):
        return 0.0
    s = math.sqrt(max(v, 0.0))
    up = math.sqrt(v + v_err) - s
    down = s - math.sqrt(max(v - v_err, 0.0))
    return max(up, down) * (1 + 4 * EPS) + 2 * EPS * s


def _moments_of_identical_pair(node: Node, p: Family) -> Moments:
    """p = q: r = 1 everywhere, so f(r) is the constant f(1)."""
    m, e, err = evaluate(node, np.zeros(1), np.zeros(1))
    value, error = float(plain(m, e)[0]), float(plain(err, e)[0])
    nan = math.nan
    return Moments(p=p.spec, q=p.spec, mean=value, mean_abs_error=error, variance=0.0,
                   variance_abs_error=0.0, kl_qp=0.0, kl_pq=0.0, bias_qp=value, bias_pq=value,
                   relative_bias_qp=nan, relative_bias_pq=nan, std=0.0,
                   bias_qp_abs_error=error, bias_pq_abs_error=error)


def moments_of_node(node: Node, p: Family, q: Family) -> Moments:
    if p.spec == q.spec and not p.discrete:
        return _moments_of_identical_pair(node, p)
    split = _split(p, q)
    big = []
    if split.empty:
        mean, variance = _outside_only(node, split)
    else:
        pin, qin = split.p, split.q
        fast = categorical_mean_and_variance(pin, qin, node) if qin.name == "categorical" else None
        if fast is not None:
            mean, variance = fast
            variance = Integral(max(variance.value, 0.0), variance.error)
        else:
            mean = expectation(pin, qin, node)
            variance = None
        if split.q_outside > 0:
            mean, variance = _with_outside(node, split, mean)
        if variance is None:
            variance = _variance(node, pin, qin, mean)
            if split.q_outside > 0 and variance.finite and not variance.beyond_float:
                # plus q's mass where r = 0: w (f(0+) - mean)^2
                limit, w = _limit_at_zero(node), split.q_outside
                d = limit - mean.value
                extra = w * d * d
                extra_err = (split.q_outside_error * d * d + w * (2 * abs(d) + mean.error) * mean.error
                             + 4 * EPS * extra)
                variance = Integral(variance.value + extra, variance.error + extra_err
                                    + EPS * (variance.value + extra))
    kl_qp, kl_pq = kl_divergences(p, q)
    if mean.beyond_float:
        raise ExactError("the mean is beyond the float64 range")
    if variance.beyond_float:
        big.append(("variance", variance.log10, variance.rel_error, 1.0))
        big.append(("std", variance.log10 / 2, variance.rel_error / 2 + EPS, 1.0))
        for key, kl in (("std_over_kl_qp", kl_qp), ("std_over_kl_pq", kl_pq)):
            if kl.finite and kl.value > kl.error:
                big.append((key, variance.log10 / 2 - math.log10(kl.value),
                            variance.rel_error / 2 + kl.error / (kl.value - kl.error) + 4 * EPS, 1.0))
    mean_v, mean_e = float(mean.value), float(mean.error)
    var_v, var_e = (math.inf, 0.0) if variance.beyond_float else (float(variance.value), float(variance.error))
    std = math.sqrt(var_v) if math.isfinite(var_v) else (math.inf if not math.isnan(var_v) else math.nan)
    std_e = _sqrt_error(var_v, var_e)
    values = {}
    for suffix, kl in (("qp", kl_qp), ("pq", kl_pq)):
        bias = _bias(mean_v, kl.value)
        bias_e = (mean_e + kl.error + EPS * abs(bias)) if math.isfinite(bias) else 0.0
        relative = _relative_bias(bias, kl.value)
        relative_e = _ratio_error(bias, bias_e, kl.value, kl.error) if math.isfinite(relative) else 0.0
        if math.isinf(kl.value) and math.isfinite(relative):
            relative_e = 0.0  # a finite mean against an infinite KL: exactly -1
        if variance.beyond_float:
            over, over_e = math.inf, 0.0
        elif math.isinf(std):
            over, over_e = (math.inf if math.isfinite(kl.value) and kl.value > 0 else math.nan), 0.0
        elif kl.value > 0 and math.isfinite(kl.value):
            over, over_e = std / kl.value, _ratio_error(std, std_e, kl.value, kl.error)
        else:
            over, over_e = (0.0 if math.isinf(kl.value) else math.nan), 0.0
        values[suffix] = (bias, bias_e, relative, relative_e, over, over_e)
    return Moments(
        p=p.spec, q=q.spec,
        mean=mean_v, mean_abs_error=mean_e,
        variance=var_v, variance_abs_error=var_e,
        kl_qp=float(kl_qp.value), kl_pq=float(kl_pq.value),
        bias_qp=float(values["qp"][0]), bias_pq=float(values["pq"][0]),
        relative_bias_qp=float(values["qp"][2]), relative_bias_pq=float(values["pq"][2]),
        kl_qp_abs_error=float(kl_qp.error), kl_pq_abs_error=float(kl_pq.error),
        std=float(std), std_abs_error=float(std_e),
        bias_qp_abs_error=float(values["qp"][1]), bias_pq_abs_error=float(values["pq"][1]),
        relative_bias_qp_abs_error=float(values["qp"][3]), relative_bias_pq_abs_error=float(values["pq"][3]),
        std_over_kl_qp=float(values["qp"][4]), std_over_kl_qp_abs_error=float(values["qp"][5]),
        std_over_kl_pq=float(values["pq"][4]), std_over_kl_pq_abs_error=float(values["pq"][5]),
        p_mass_outside_q=float(split.p_outside), p_mass_outside_q_abs_error=float(split.p_outside_error),
        q_mass_outside_p=float(split.q_outside), q_mass_outside_p_abs_error=float(split.q_outside_error),
        beyond_float64=tuple(big),
    )


def _variance(node, p, q, mean):
    if not mean.finite:
        return Integral(math.inf, 0.0)
    second = expectation(p, q, square(constant_shift(node, mean.value)))
    if second.beyond_float:
        return second
    if second.finite:
        # E[(f - c)^2] = Var + (mean - c)^2 with |mean - c| <= mean error
        return Integral(max(second.value, 0.0), second.error + mean.error ** 2)
    return Integral(math.inf, 0.0)


def _with_outside(node, split, mean):
    """Add q's mass where p = 0 (r = 0 there, f = f(0+)) to E_q[f] over the common support."""
    limit = _limit_at_zero(node)
    if limit is None:
        raise ExactError("cannot tell the limit of f as r -> 0, where q has mass and p has none")
    w, w_err = split.q_outside, split.q_outside_error
    if math.isinf(limit):
        if mean.finite or mean.value == limit:
            return Integral(limit, 0.0), Integral(math.inf, 0.0)
        return Integral(math.nan, 0.0), Integral(math.inf, 0.0)
    if not mean.finite:
        return mean, Integral(math.inf, 0.0)
    total = mean.value + w * limit
    return Integral(total, mean.error + w_err * abs(limit) + EPS * (abs(total) + abs(w * limit))), None


def _outside_only(node, split):
    limit = _limit_at_zero(node)
    if limit is None:
        raise ExactError("cannot tell the limit of f as r -> 0, where q has all its mass")
    return Integral(limit, 0.0 if math.isinf(limit) else EPS * abs(limit)), Integral(0.0, 0.0)


def moments(expr, p: Family, q: Family) -> Moments:
    """Exact moments of f = ``expr`` (a checked sympy expression in R) under x ~ q."""
    return moments_of_node(compile_estimator(expr), p, q)
