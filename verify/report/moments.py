"""Quantities read off one row of an exact-moments sweep in results.json (x ~ q), with
their error bounds: the index's ranking, the estimator pages and the figures use them."""
from __future__ import annotations

import math


def as_float(value):
    """A results.json number as a float: "inf"/"-inf" as infinities, None and other text as nan."""
    if isinstance(value, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(value, math.nan)
    return math.nan if value is None else float(value)


def std_over_kl(m):
    """std/KL(q||p) of one sweep row: inf for an infinite variance, nan when undefined."""
    if m["variance"] == "inf":
        return math.inf
    if not isinstance(m["variance"], float) or not isinstance(m["kl_qp"], float) or m["kl_qp"] == 0:
        return math.nan
    return math.sqrt(max(m["variance"], 0.0)) / m["kl_qp"]


def relative_bias_bound(m, direction="qp"):
    """Absolute error bound of the relative bias against KL(q||p) or KL(p||q): the bounds of
    the mean and the KL over the KL, plus the rounding of the stored 10 digits."""
    kl = as_float(m[f"kl_{direction}"])
    error = as_float(m.get("mean_abs_error", 0.0)) + as_float(m.get(f"kl_{direction}_abs_error", 0.0))
    bias = as_float(m[f"relative_bias_{direction}"])
    if not (math.isfinite(kl) and kl > 0 and math.isfinite(error)):
        return math.nan
    return error / kl * (1 + error / kl) + 1e-9 * abs(bias)


def std_bound(m):
    """Absolute error bound of std/KL(q||p) from the variance's bound."""
    variance, error, kl = as_float(m["variance"]), as_float(m.get("variance_abs_error", 0.0)), as_float(m["kl_qp"])
    if not (math.isfinite(variance) and math.isfinite(error) and math.isfinite(kl) and kl > 0):
        return 0.0 if math.isinf(variance) else math.nan
    std = math.sqrt(max(variance, 0.0))
    return max(math.sqrt(variance + error) - std, std - math.sqrt(max(variance - error, 0.0))) / kl + 1e-9 * std / kl
