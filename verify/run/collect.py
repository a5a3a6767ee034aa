"""Run every layer over the registry and return one JSON-ready record (no printing).

Layers stay independent: each is computed on its own, and the cross-checks compare
their results as plain data.  Timings are kept out so the record is deterministic.
"""
from __future__ import annotations

import math

from verify.api import SCHEMA_VERSION
from verify.core.claims import BACKWARD, LAYERS, DTYPES, FLOATING, SYMBOLIC, expand_claims
from verify.core.timelimit import Failed, TimedOut, run_all

SIGNIFICANT_DIGITS = 10  # floats in results.json: stable across runs, ample for reports
CURVE_LOG_RATIOS = tuple(k / 10 for k in range(-100, 101))


def normalise(value, rounded=True):
    """Round floats to SIGNIFICANT_DIGITS and spell non-finite ones, recursively.
    Counterexamples keep every digit: they must re-check from the report."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if rounded else value
    if isinstance(value, dict):
        return {str(k): normalise(v, rounded and k != "counterexample") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v, rounded) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return normalise(value.item(), rounded)
    return str(value)


def curve(expr) -> dict:
    """f against log r on [-10, 10], at 40 digits (for the report's plot)."""
    import mpmath
    import sympy as sp

    from verify.core.expression import RATIO

    function = sp.lambdify(RATIO, expr, modules="mpmath")
    values = []
    with mpmath.workdps(40):
        for t in CURVE_LOG_RATIOS:
            try:
                value = function(mpmath.exp(mpmath.mpf(t)))
                values.append(float(value) if mpmath.im(value) == 0 else float("nan"))
            except (ValueError, ZeroDivisionError, OverflowError):
                values.append(float("nan"))
    return {"log_ratio": list(CURVE_LOG_RATIOS), "f": values}


def moments_json(name, moments) -> dict:
    """One sweep pair as JSON, with the error bounds of both KLs (for ties in rankings)."""
    record = moments.as_json(name)
    for key in ("kl_qp_abs_error", "kl_pq_abs_error"):
        record.setdefault(key, getattr(moments, key, 0.0))
    return record


def _layer_task(layer, estimator, profile, timeout, sweep_workers=None):
    """One cell, through the API (verify.api.cells)."""
    from verify.api import cells

    kind, _, dtype = layer.partition("@")
    if kind == "symbolic":
        return cells.symbolic_cell(estimator, timeout)
    if kind == "floating":
        return cells.floating_cell(estimator, profile, sweep_workers, (dtype,))
    if kind == "moments":
        return cells.moments_cell(estimator)
    return cells.gradients_cell(estimator)


def _reproductions_task():
    from verify.api import cells

    return cells.reproductions_cell()


def _sequences_task():
    from verify.api import cells

    return cells.sequences_cell()


def cross_checks(name, record) -> list[str]:
    """Disagreements between layers for one estimator: each one is a harness bug."""
    from verify.api.cells import gradient_disagreements
    from verify.run.crosscheck import unbiasedness_disagreements

    symbolic_verdicts = {claim: v["verdict"] for claim, v in record["claims"].items() if claim in SYMBOLIC}
    problems = []
    if record.get("moments"):
        # one check over every family's sweep: a refutation needs a biased pair somewhere,
        # not in each family (a clamp may only show under heavy tails)
        every_pair = [m for sweep in record["moments"].values() for m in sweep]
        problems += [f"{name}: {p}" for p in unbiasedness_disagreements(symbolic_verdicts, every_pair)]
    if "gradients" in record:
        problems += [f"{name}: {p}" for p in gradient_disagreements(symbolic_verdicts, record["gradients"])]
    return problems


def _implementation(estimator):
    function = estimator.numeric
    return None if function is None else f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


def cell_description(layer, estimator, profile, timeout) -> dict:
    """What a cell's result depends on (verify.run.cache): the declaration it reads, the
    harness code its layer runs, the implementation it calls, the options.  Cells with
    equal descriptions give equal results: catalog entries share value functions and
    implementations, so each distinct cell is computed once."""
    from verify.run import cache

    kind, _, dtype = layer.partition("@")
    data = {"layer": layer, "sources": cache.layer_sources(kind)}
    if estimator is None:  # the reproductions
        return data
    data["expression"] = None if estimator.expr is None else str(estimator.expr)
    calls_code = kind == "floating" or (kind == "gradients" and estimator.usage is not None)
    if kind == "symbolic":
        data["timeout"] = timeout
    if kind == "floating":
        usage = estimator.usage
        data.update(profile=profile, dtype=dtype, fp_ulps=estimator.fp_ulps, fp_atol=estimator.fp_atol,
                    framework=estimator.framework, computes_in=usage.computes_in if usage is not None else None)
    if kind == "gradients":
        data["usage"] = repr(estimator.usage)
    if calls_code and estimator.numeric is not None:
        data["implementation"] = _implementation(estimator)
        data["sources"] = {**data["sources"], **cache.implementation_sources(estimator.numeric)}
    gradient = getattr(estimator, "numeric_grad", None)
    if kind == "floating" and gradient is not None:
        # the backward claims: the emulated autograd, and the exact gradient it is judged by
        # (entries sharing a value implementation may differ here: TRL's token and sequence weights)
        data["gradient_implementation"] = f"{gradient.__module__}.{gradient.__qualname__}"
        data["sources"] = {**data["sources"], **cache.implementation_sources(gradient)}
        backward = getattr(estimator, "backward_expr", None)
        data["backward_expression"] = None if backward is None else str(backward)
    return data


def _needs_expression(layer):
    return layer.partition("@")[0] in ("symbolic", "floating", "moments")


def _cells(estimator, layers):
    for layer in LAYERS:
        if layer not in layers:
            continue
        if layer == "floating":
            if estimator.numeric is not None and estimator.expr is not None:
                yield from (f"floating@{dtype}" for dtype in DTYPES)
        elif not (estimator.expr is None and _needs_expression(layer)):
            yield layer


def collect(registry: dict, profile="ci", timeout=10.0, jobs=2, progress=None, layers=LAYERS, cache=None,
            stats=None, reproductions=True) -> dict:
    """Every layer (of ``layers``) over every estimator, run ``jobs`` cells at a time.

    ``cache``: a ``verify.run.cache.Cache`` whose results are reused where the cell's
    fingerprint and the dependency versions match (None: compute everything); each
    computed cell is stored in it as it finishes (``Cache(read=False)``, as ``--fresh``
    makes: stored, never read).  ``reproductions``: the exact layer's reproductions of
    published figures (with the moments layer).  ``stats``, a dict, receives the counts
    of cells computed and reused."""
    from verify.run import cache as cells
    from verify.core.expression import as_expression
    from verify.api.cells import library_data

    names = sorted(registry)
    wanted = [(layer, name) for name in names for layer in _cells(registry[name], layers)]
    if "moments" in layers and reproductions:
        wanted.append(("reproductions", None))
    if "gradients" in layers and reproductions:
        wanted.append(("sequences", None))
    descriptions = {cell: cell_description(cell[0], registry.get(cell[1]), profile, timeout) for cell in wanted}
    prints = {cell: cells.fingerprint(description) for cell, description in descriptions.items()}
    versions = cells.versions()
    tasks, seen = [], set()
    for cell in wanted:
        if prints[cell] not in seen:
            seen.add(prints[cell])
            tasks.append(cell)
    by_print, missing = {}, []
    for cell in tasks:
        hit, result = (cache.get(cells.cache_key(prints[cell], versions)) if cache is not None
                       else (False, None))
        if hit:
            by_print[prints[cell]] = result
        else:
            missing.append(cell)
    calls = [(({"reproductions": _reproductions_task, "sequences": _sequences_task}[layer], ()) if name is None
              else (_layer_task, (layer, registry[name], profile, timeout, 1 if jobs > 1 else None)))
             for layer, name in missing]  # cells already run side by side: one process per sweep
    budget = 1800.0  # per cell: the floating layer enumerates every 16-bit input pair (minutes on a busy machine)

    def store(index, result):
        """Each cell goes into the cache as it finishes: an interrupted run keeps what it computed."""
        if cache is not None and not isinstance(result, (TimedOut, Failed)):
            cache.put(cells.cache_key(prints[missing[index]], versions), result)

    computed = run_all(calls, budget, jobs=jobs, on_done=progress and (lambda i: progress(missing[i], len(missing))),
                       on_result=store)
    for cell, result in zip(missing, computed):
        by_print[prints[cell]] = result
    if stats is not None:
        stats.update(computed=len(missing), reused=len(tasks) - len(missing))
    results = [by_print[prints[cell]] for cell in wanted]
    sweeps = {}
    records = {name: {"expression": (None if registry[name].expr is None else str(as_expression(registry[name].expr))),
                      "source": registry[name].source, "description": registry[name].description,
                      "declared": list(registry[name].claims), "claims": {}, "errors": [], "fingerprints": {}}
               for name in names}
    reproduced = sequence_models = None
    gradient_mse: dict = {}
    for (layer, name), result in zip(wanted, results):
        if name is not None:
            records[name]["fingerprints"][layer] = prints[(layer, name)]
        if isinstance(result, (TimedOut, Failed)):
            message = f"{layer} layer: " + (f"timed out after {budget:g} s" if isinstance(result, TimedOut) else result.error)
            if layer == "sequences":
                sequence_models = {"error": message}
            elif name is None:
                reproduced = {"error": message}
            else:
                records[name]["errors"].append(message)
            continue
        if layer == "reproductions":
            reproduced = result
        elif layer == "sequences":
            sequence_models = result
        elif layer == "symbolic" or layer.startswith("floating"):
            records[name]["claims"].update(result)
        elif layer == "gradients":
            records[name]["gradients"] = result["rows"]
            if "mse" in result:
                gradient_mse[name] = result["mse"]
            if "library" in result:
                sweeps[name] = result["library"]
        else:
            records[name][layer] = result
    order = list(SYMBOLIC) + expand_claims(FLOATING + BACKWARD)  # claims in one order, however the cells arrived
    for record in records.values():
        record["claims"] = {c: record["claims"][c] for c in sorted(record["claims"], key=order.index)}
    disagreements = []
    for name in names:
        disagreements += cross_checks(name, records[name])
    # which estimator to use: the built-in estimators (catalog entries are compared in libraries.md)
    choosing = choosing_data({name: records[name] for name in names if registry[name].usage is None}, gradient_mse)
    for name in names:
        record = records[name]
        if "moments" in record:
            record["moments"] = {family: [moments_json(name, m) for m in sweep]
                                 for family, sweep in record["moments"].items()}
        record["curve"] = None if registry[name].expr is None else curve(as_expression(registry[name].expr))
    return normalise({
        "schema_version": SCHEMA_VERSION,
        "conventions": "x ~ q, r = p(x)/q(x); KL(q||p) = E_q[-log r] (kl_qp), KL(p||q) = E_q[r log r] (kl_pq)",
        "profile": profile,
        "layers": [layer for layer in LAYERS if layer in layers],
        "estimators": records,
        "reproductions": reproduced,
        "reproductions_fingerprint": prints.get(("reproductions", None)),
        "sequence_models": sequence_models,
        "sequence_models_fingerprint": prints.get(("sequences", None)),
        "disagreements": disagreements,
        "choosing": choosing,
        **library_data(registry, sweeps),
    })


def choosing_data(records, gradient_mse=None) -> dict:
    """Which estimator to use (reports/choosing.md), from the exact layer's moments
    (value use) and the gradient layer's rows and softmax gradient MSEs (loss and reward
    use); see verify.run.choosing.  ``gradient_mse``: estimator -> mode -> MSE table."""
    from verify.run.choosing import gradient_mse_rankings, gradient_rankings, value_rankings

    sweeps = {name: record["moments"] for name, record in records.items() if record.get("moments")}
    rows = {name: record["gradients"] for name, record in records.items() if record.get("gradients")}
    kl_by_regime = {row["regime"]: row["kl_qp"] for table in rows.values() for row in table
                    if row["family"] == "softmax"}
    tables = gradient_mse or {}

    def mse_rankings(mode):
        return gradient_mse_rankings({name: by_mode[mode] for name, by_mode in tables.items() if mode in by_mode},
                                     kl_by_regime)

    return {"value": value_rankings(sweeps), "gradient": gradient_rankings(rows, "loss"),
            "gradient_mse": mse_rankings("loss"), "reward": gradient_rankings(rows, "reward"),
            "reward_mse": mse_rankings("reward")}
