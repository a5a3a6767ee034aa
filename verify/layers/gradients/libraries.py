"""Data for the libraries report: each catalog entry's usage as plain data,
its expected gradients across a near-to-far sweep, and the sequence-level analysis.
Returns data only; verify/report/libraries.py renders it."""
from __future__ import annotations

__all__ = ["library_task", "library_data"]


def library_task(estimator) -> dict:
    """The near-to-far sweep and the exhaustive 16-bit sign check of one catalog entry
    (a cell of ``verify all``)."""
    from verify.layers.gradients.usage import library_sweep

    return {"sweep": library_sweep(estimator), "nonnegative_16bit": nonnegative_16bit(estimator)}


def nonnegative_16bit(estimator) -> dict:
    """fp_nonnegative over every input pair of float16 and bfloat16, for implementations
    that work in the input dtype: their first operation is the rounded difference
    d = fl(logp - logq) and the rest is a function of d (weights exp(logq - logq) are 1),
    so every 16-bit d in [-60, 60] (reached as (d, 0) or (0, -d), d < 0 or d >= 0) covers every pair of
    [-60, 0].  A library that casts to float32 first forms more distinct differences
    than that; it is not enumerated here (None)."""
    import numpy as np

    from verify.core.dtypes import numpy_dtypes

    out = {}
    for name in ("float16", "bfloat16"):
        if estimator.numeric is None or estimator.usage.computes_in != "the input dtype":
            out[name] = None
            continue
        dtype = numpy_dtypes()[name]
        with np.errstate(invalid="ignore"):
            values = np.arange(65536, dtype=np.uint16).view(dtype).astype(np.float64)
        values = np.unique(values[np.isfinite(values) & (np.abs(values) <= 60)])
        logp = np.where(values >= 0, 0.0, values).astype(dtype)  # d = logp - logq, both in [-60, 0]
        logq = np.where(values >= 0, -values, 0.0).astype(dtype)
        result = np.asarray(estimator.numeric(logp, logq)).astype(np.float64)
        bad = np.nonzero(~(result >= 0))[0]
        record = {"verdict": "refuted" if bad.size else "proved", "inputs": int(values.size),
                  "failures": int(bad.size)}
        if bad.size:
            worst = bad[np.argmin(np.nan_to_num(result[bad], nan=-np.inf))]
            record["counterexample"] = {"logp": float(logp[worst]), "logq": float(logq[worst]),
                                        "dtype": name, "value": float(result[worst])}
        out[name] = record
    return out


def _usage_record(estimator) -> dict:
    from verify.layers.gradients.usage import weight_description

    usage = estimator.usage
    return {
        "library": usage.library, "option": usage.option, "kinds": list(usage.kinds),
        "default_for": list(usage.default_for), "weight": weight_description(usage),
        "straight_through": usage.straight_through, "sequence_level": usage.sequence_level,
        "full_vocabulary": usage.full_vocabulary, "computes_in": usage.computes_in,
        "coefficient": usage.coefficient, "advice": usage.advice, "source": estimator.source,
    }


def library_data(registry: dict, sweeps: dict) -> dict:
    """``{"libraries": {name: usage record + sweep}, "sequences": ...}`` for the catalog
    entries of ``registry`` (empty without any)."""
    from verify.layers.gradients.sequences import sequence_report

    entries = {}
    for name in sorted(registry):
        if registry[name].usage is None:
            continue
        computed = sweeps.get(name) or {}
        entries[name] = {**_usage_record(registry[name]), "sweep": computed.get("sweep"),
                         "nonnegative_16bit": computed.get("nonnegative_16bit")}
    if not entries:
        return {}
    data = {"libraries": entries}
    if sweeps:
        data["sequences"] = sequence_report()
    return data
