"""The variance-optimal control variate for one pair (``verify moments --control-variate``).

For x ~ q and the family of estimators -log r + lambda (r - 1) (k1 at lambda = 0, k3 at 1):

    Var(lambda) = Var(log r) - 2 lambda Cov(log r, r) + lambda^2 Var(r),
    lambda* = Cov(log r, r) / Var(r)  (= (KL(p||q) + KL(q||p)) / (E_q[r^2] - 1) when E_q[r] = 1).

Everything comes from the exact layer's moments with their error bounds: Var(k1), Var(r) and
Var(k3) = Var(-log r + (r - 1)) give Cov(-log r, r - 1) = (Var(k3) - Var(k1) - Var(r)) / 2;
lambda* = -Cov / Var(r) by interval arithmetic; the variance at lambda* is the exact layer's
variance of -log r + lambda_hat (r - 1) at the float lambda_hat, less Var(r) (lambda_hat -
lambda*)^2, which lies in [0, Var(r) bound(lambda)^2].  Infinite cases, decided by the
exact layer: where E_q[r^2] is infinite, every lambda != 0 has infinite variance and the
optimal lambda is 0 (k1 itself); where Var(log r) is infinite (q has mass where p = 0, or
heavy tails), every lambda has infinite variance and no lambda is optimal (null).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ControlVariate", "pair_control_variate", "CONTROL_KEYS"]

CONTROL_KEYS = ("optimal_lambda", "variance_at_optimal", "variance_k1", "variance_k3")


@dataclass(frozen=True)
class ControlVariate:
    """Each value with its ``_abs_error``; inf where infinite, None where undefined or
    undecided (``note`` says which and why)."""

    optimal_lambda: float | None
    optimal_lambda_abs_error: float | None
    variance_at_optimal: float | None
    variance_at_optimal_abs_error: float | None
    variance_k1: float | None
    variance_k1_abs_error: float | None
    variance_k3: float | None
    variance_k3_abs_error: float | None
    note: str = ""

    def as_json(self) -> dict:
        def number(value):
            if value is None or math.isfinite(value):
                return value
            return "inf" if value > 0 else "-inf"

        out = {}
        for key in CONTROL_KEYS:
            out[key] = number(getattr(self, key))
            out[key + "_abs_error"] = number(getattr(self, key + "_abs_error"))
        out["note"] = self.note
        return out


def _variance(expr, p, q):
    """(variance, abs error) of expr under x ~ q from the exact layer; None beyond float64."""
    from verify.layers.exact import moments

    result = moments(expr, p, q)
    if result.big("variance") is not None:
        return None
    return result.variance, result.variance_abs_error


def _record(values: dict, note: str) -> ControlVariate:
    fields = {}
    for key in CONTROL_KEYS:
        value, error = values.get(key, (None, None))
        fields[key], fields[key + "_abs_error"] = value, (None if value is None else error)
    return ControlVariate(**fields, note=note)


def _bounded(interval, lower=None):
    """(midpoint, half-width rounded up) of an mpmath interval clipped below at ``lower``."""
    import mpmath

    low, high = (mpmath.mp.make_mpf(x) for x in interval._mpi_)
    if lower is not None:
        low, high = max(low, lower), max(high, lower)
    low_f, high_f = float(low), float(high)
    if low_f > low:
        low_f = math.nextafter(low_f, -math.inf)
    if high_f < high:
        high_f = math.nextafter(high_f, math.inf)
    value = (low_f + high_f) / 2
    return value, math.nextafter(max(value - low_f, high_f - value), math.inf)


def pair_control_variate(p, q) -> ControlVariate:
    """The control-variate block for x ~ q (``p``, ``q``: the exact layer's families).
    ``ExactError`` from the exact layer becomes an undecided block (values None, the note)."""
    import mpmath
    import sympy as sp

    from verify.core.expression import RATIO
    from verify.layers.exact import ExactError

    k1, excess = -sp.log(RATIO), RATIO - 1
    try:
        var_k1, var_r, var_k3 = (_variance(e, p, q) for e in (k1, excess, k1 + excess))
    except ExactError as error:
        return _record({}, f"undecided: {error}")
    if var_k1 is None or var_r is None:
        return _record({}, "undecided: a variance is beyond the float64 range")
    k1_value = (var_k1[0], var_k1[1] if math.isfinite(var_k1[0]) else 0.0)
    k3_value = (None, None) if var_k3 is None else (var_k3[0], var_k3[1] if math.isfinite(var_k3[0]) else 0.0)
    if math.isinf(var_k1[0]):
        infinite = (math.inf, 0.0)
        return _record({"variance_at_optimal": infinite, "variance_k1": infinite, "variance_k3": infinite},
                       "Var(log r) is infinite under q: every lambda gives infinite variance, none is optimal")
    if math.isinf(var_r[0]):
        return _record({"optimal_lambda": (0.0, 0.0), "variance_at_optimal": k1_value, "variance_k1": k1_value,
                        "variance_k3": (math.inf, 0.0)},
                       "E_q[r^2] is infinite: every lambda != 0 has infinite variance, so the optimal lambda is 0 (k1)")
    if var_k3 is None:
        return _record({"variance_k1": k1_value}, "undecided: Var(k3) is beyond the float64 range")
    saved, mpmath.iv.prec = mpmath.iv.prec, 80
    try:
        def ball(value, error):
            return mpmath.iv.mpf(value) + mpmath.iv.mpf([-1, 1]) * mpmath.iv.mpf(error)

        a, b, c = ball(*var_k1), ball(*var_r), ball(*var_k3)
        b_low = mpmath.mp.make_mpf(b._mpi_[0])
        if b_low <= 0:
            return _record({"variance_at_optimal": k1_value, "variance_k1": k1_value, "variance_k3": k3_value},
                           "Var(r) is not bounded away from 0: the optimal lambda is undefined (every lambda gives "
                           "Var(k1) when it is 0)")
        covariance = (c - a - b) / 2            # Cov(-log r, r - 1)
        optimal = _bounded(-covariance / b)
    finally:
        mpmath.iv.prec = saved
    chosen = optimal[0]
    try:
        at_chosen = _variance(k1 + sp.Float(chosen) * excess, p, q)
    except ExactError as error:
        at_chosen, reason = None, str(error)
    else:
        reason = "beyond the float64 range"
    values = {"optimal_lambda": optimal, "variance_k1": k1_value, "variance_k3": k3_value}
    if at_chosen is None or not math.isfinite(at_chosen[0]):
        return _record(values, f"undecided: the variance at the optimal lambda: {reason}")
    saved, mpmath.iv.prec = mpmath.iv.prec, 80
    try:
        at = ball(*at_chosen)
        shortfall = ball(*var_r) * mpmath.iv.mpf(optimal[1]) ** 2
        upper = mpmath.mp.make_mpf(at._mpi_[1])
        lower = mpmath.mp.make_mpf((at - shortfall)._mpi_[0])
        values["variance_at_optimal"] = _bounded(mpmath.iv.mpf([lower, upper]), lower=0)
    finally:
        mpmath.iv.prec = saved
    return _record(values, "")
