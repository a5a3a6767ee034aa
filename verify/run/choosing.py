"""Which estimator to use: rankings for reports/choosing.md, as plain data.

Value use (logging a KL): an average of n per-token values estimates the KL with mean
squared error MSE_n = bias^2 + Var/n, exactly, from the exact layer's moments (no
sampling).  Each MSE carries an absolute error bound propagated from
the moments' bounds, and estimators whose MSEs lie within their bounds of each other are
ties: an estimator's rank is 1 + the number of estimators that are better beyond both
bounds.

Gradient use (the KL term as a loss, or its value as a REINFORCE reward penalty): what
matters first is which gradient the term follows in expectation (the gradient layer's
``gradient_of`` in mode ``loss`` or ``reward``: the rows ``verify gradients NAME --mode
MODE`` prints); among those that do not follow the wanted one, the cosine with it orders
them.  A reward is not ranked by its value's MSE: k3's value is a fine KL estimate, but
as a reward its expected gradient is not grad KL(q||p); only k1's is.
"""
from __future__ import annotations

import math

from verify.core.dtypes import EPS

BATCH_SIZES = (1, 64, 4096)  # as the gradient layer's softmax MSE tables (verify.api.cells)
# A regime is the sweep pair whose KL(q||p) is nearest (in log) these values.
REGIMES = {"near": 0.01, "mid": 0.5, "far": 3.0}
TARGETS = ("kl_qp", "kl_pq")
# Rounding of the few float64 operations that form an MSE from the moments.
ROUNDING_ULPS = 8


def _value(m, key, default=None):
    value = m.get(key, default) if isinstance(m, dict) else getattr(m, key, default)
    if isinstance(value, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(value, math.nan)
    return math.nan if value is None else float(value)


def mse(m, target: str, n: int) -> tuple[float, float]:
    """(MSE of the mean of n values against KL ``target``, its absolute error bound).
    An infinite variance or mean gives (inf, 0); an undefined one (nan, nan)."""
    mean, variance, kl = _value(m, "mean"), _value(m, "variance"), _value(m, target)
    mean_error, variance_error = _value(m, "mean_abs_error"), _value(m, "variance_abs_error")
    kl_error = _value(m, f"{target}_abs_error", 0.0)
    if math.isnan(kl_error):
        kl_error = 0.0
    if any(math.isnan(v) for v in (mean, variance, kl)):
        return math.nan, math.nan
    if math.isinf(variance) or math.isinf(mean):
        return math.inf, 0.0
    if math.isinf(kl):
        return math.nan, math.nan
    bias = mean - kl
    bias_error = mean_error + kl_error
    value = bias * bias + variance / n
    error = 2 * abs(bias) * bias_error + bias_error ** 2 + variance_error / n + ROUNDING_ULPS * EPS * value
    return value, error


def rank(entries: list[dict]) -> list[dict]:
    """Entries {"estimator", "mse", "abs_error"} with "rank" set, best first.  Ties: an
    entry's rank is 1 + the number of entries better beyond both error bounds; infinite
    MSEs tie with each other and come after every finite one; undefined ones come last."""
    def better(a, b):  # a is better than b beyond both bounds
        if math.isnan(a["mse"]):
            return False
        if math.isnan(b["mse"]):
            return True
        if math.isinf(b["mse"]):
            return not math.isinf(a["mse"])
        return a["mse"] + a["abs_error"] < b["mse"] - b["abs_error"]

    for entry in entries:
        entry["rank"] = 1 + sum(better(other, entry) for other in entries if other is not entry)

    def order(entry):  # ties by name: the order of values inside their bounds is noise
        return (entry["rank"], entry["estimator"])

    return sorted(entries, key=order)


def _regime_index(sweep, target_kl):
    candidates = [(abs(math.log(_value(m, "kl_qp") / target_kl)), i) for i, m in enumerate(sweep)
                  if math.isfinite(_value(m, "kl_qp")) and _value(m, "kl_qp") > 0]
    return min(candidates)[1] if candidates else None


def value_rankings(sweeps: dict) -> dict:
    """family -> regime -> {p, q, kl_qp, kl_pq, rankings: target -> n -> ranked entries}.
    ``sweeps``: estimator -> family -> the exact layer's sweep (Moments or their JSON);
    every estimator's sweep of a family uses the same pairs."""
    families: list[str] = []
    for by_family in sweeps.values():
        families += [f for f in by_family if f not in families]
    out: dict = {}
    for family in families:
        present = {name: by_family[family] for name, by_family in sweeps.items() if by_family.get(family)}
        if not present:
            continue
        reference = next(iter(present.values()))
        out[family] = {}
        for regime, target_kl in REGIMES.items():
            index = _regime_index(reference, target_kl)
            if index is None:
                continue
            pair = reference[index]
            cell = {"p": _text(pair, "p"), "q": _text(pair, "q"), "kl_qp": _value(pair, "kl_qp"),
                    "kl_pq": _value(pair, "kl_pq"), "rankings": {}}
            for target in TARGETS:
                cell["rankings"][target] = {}
                for n in BATCH_SIZES:
                    entries = []
                    for name, sweep in sorted(present.items()):
                        value, error = mse(sweep[index], target, n)
                        entries.append({"estimator": name, "mse": value, "abs_error": error})
                    cell["rankings"][target][str(n)] = rank(entries)
            out[family][regime] = cell
    return out


def _text(m, key):
    return m[key] if isinstance(m, dict) else getattr(m, key)


# The order of gradient_of values when the wanted gradient is one KL: following it exactly,
# then a multiple of it (right direction), then anything else (by cosine), then nothing.
def _gradient_score(row, target):
    kind = row["gradient_of"]
    cosine = row.get(f"cosine_{target}")
    if kind == target:
        return (0, 0.0)
    if kind == f"multiple_of_{target}":
        return (1, 0.0)
    if kind == "zero":
        return (3, 0.0)
    return (2, -(cosine if isinstance(cosine, float) else -2.0))


def gradient_rankings(rows: dict, mode: str = "loss") -> dict:
    """family -> regime -> target -> ranked entries {estimator, gradient_of, cosine,
    norm_ratio, rank} for the KL term in gradient mode ``mode`` (``loss``, or ``reward``:
    its value as a REINFORCE reward).  Equal classes tie; among ``biased`` gradients a
    larger cosine with the wanted gradient ranks first (cosines within 1e-9 tie: they are
    rounded to 10 digits)."""
    cells: dict = {}
    for name, table in sorted(rows.items()):
        for row in table:
            if row["mode"] != mode:
                continue
            cells.setdefault(row["family"], {}).setdefault(row["regime"], {})[name] = row
    out: dict = {}
    for family, regimes in cells.items():
        out[family] = {}
        for regime, by_name in regimes.items():
            out[family][regime] = {"kl_qp": next(iter(by_name.values()))["kl_qp"], "rankings": {}}
            for target in TARGETS:
                entries = [{"estimator": name, "gradient_of": row["gradient_of"],
                            "cosine": row.get(f"cosine_{target}"), "norm_ratio": row.get(f"norm_ratio_{target}"),
                            "score": _gradient_score(row, target)} for name, row in by_name.items()]
                for entry in entries:
                    entry["rank"] = 1 + sum(_beyond(other["score"], entry["score"]) for other in entries)
                entries.sort(key=lambda e: (e["rank"], e["score"], e["estimator"]))
                for entry in entries:
                    del entry["score"]
                out[family][regime]["rankings"][target] = entries
    return out


def _beyond(a, b) -> bool:
    """Score a is better than b: a better class, or in the same class a cosine larger by
    more than the rounding of the stored cosines."""
    if a[0] != b[0]:
        return a[0] < b[0]
    return a[1] < b[1] - 1e-9


# ------------------------------------------------------------ gradient MSE (softmax)
#
# For a softmax policy q = softmax(theta) over V outcomes, one sampled token x gives the
# gradient g(x) = c(r) (e_x - q) with r = p_x / q_x: c = -r f'(r) for the KL term used as
# a loss, c = f(r) for its value used as a REINFORCE reward (the score of x is e_x - q).
def gradient_mse_rankings(tables: dict, kl_by_regime: dict) -> dict:
    """regime -> {kl_qp, rankings: target -> str(n) -> ranked entries}, from ``tables``
    (estimator -> softmax_gradient_mse_table) and the KL(q||p) of each regime."""
    regimes: list[str] = []
    for table in tables.values():
        regimes += [r for r in table if r not in regimes]
    out: dict = {}
    for regime in regimes:
        cell = {"kl_qp": kl_by_regime.get(regime), "rankings": {}}
        for target in TARGETS:
            cell["rankings"][target] = {}
            for n in BATCH_SIZES:
                entries = []
                for name, table in sorted(tables.items()):
                    values = (table.get(regime) or {}).get(target, {}).get(str(n))
                    value, error = values if values else (math.nan, math.nan)
                    entries.append({"estimator": name, "mse": value, "abs_error": error})
                cell["rankings"][target][str(n)] = rank(entries)
        out[regime] = cell
    return out
