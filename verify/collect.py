"""Run every layer over the registry and return one JSON-ready record (no printing).

Layers stay independent: each is computed on its own, and the cross-checks compare
their results as plain data.  Timings are kept out so the record is deterministic.
"""
from __future__ import annotations

import math

from verify.api import SCHEMA_VERSION
from verify.claims import FLOATING, SYMBOLIC, expand_claims
from verify.timelimit import Failed, TimedOut, run_all

SIGNIFICANT_DIGITS = 10  # floats in results.json: stable across runs, ample for reports
CURVE_LOG_RATIOS = tuple(k / 10 for k in range(-100, 101))
LAYERS = ("symbolic", "floating", "moments", "gradients")


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

    from verify.expression import R

    function = sp.lambdify(R, expr, modules="mpmath")
    values = []
    with mpmath.workdps(40):
        for t in CURVE_LOG_RATIOS:
            try:
                value = function(mpmath.exp(mpmath.mpf(t)))
                values.append(float(value) if mpmath.im(value) == 0 else float("nan"))
            except (ValueError, ZeroDivisionError, OverflowError):
                values.append(float("nan"))
    return {"log_ratio": list(CURVE_LOG_RATIOS), "f": values}


def symbolic_layer(estimator, timeout):
    from verify.api import check

    verdicts = check(estimator, list(SYMBOLIC), timeout=timeout, jobs=1).verdicts
    return {claim: verdict.as_json() for claim, verdict in verdicts.items()}


def floating_layer(estimator, profile, sweep_workers=None):
    from verify import floating
    from verify.api import check

    if estimator.numeric is None:
        return {}
    with floating.sweep_workers(sweep_workers or floating.SWEEP_WORKERS):
        verdicts = check(estimator, expand_claims(FLOATING), profile=profile).verdicts
    return {claim: verdict.as_json() for claim, verdict in verdicts.items()}


def moments_layer(estimator):
    from verify import exact
    from verify.expression import as_expression

    expr = as_expression(estimator.expr)
    return {family: exact.sweep_moments(expr, family) for family in exact.SWEEP_FAMILIES}


def gradients_layer(estimator):
    """The gradient table, and the exact MSE of the loss gradient on the softmax pairs
    (for reports/choosing.md)."""
    from verify.api import gradients
    from verify.choosing import softmax_gradient_mse_table
    from verify.expression import as_expression

    rows = [row.as_row() for row in gradients(estimator).rows]
    result = {"rows": rows}
    if estimator.usage is None:  # the built-in estimators are the ones reports/choosing.md compares
        result["mse"] = softmax_gradient_mse_table(as_expression(estimator.expr))
    else:  # a catalog entry: the libraries report's sweep reuses this process's compiled modes
        from verify.libraries import library_task

        result["library"] = library_task(estimator)
    return result


def moments_json(name, moments) -> dict:
    """One sweep pair as JSON, with the error bounds of both KLs (for ties in rankings)."""
    record = moments.as_json(name)
    for key in ("kl_qp_abs_error", "kl_pq_abs_error"):
        record.setdefault(key, getattr(moments, key, 0.0))
    return record


def reproductions_layer():
    from verify import exact

    return exact.reproductions()


def _layer_task(layer, estimator, profile, timeout, sweep_workers=None):
    if layer == "symbolic":
        return symbolic_layer(estimator, timeout)
    if layer == "floating":
        return floating_layer(estimator, profile, sweep_workers)
    if layer == "moments":
        return moments_layer(estimator)
    return gradients_layer(estimator)


def cross_checks(name, record) -> list[str]:
    """Disagreements between layers for one estimator: each one is a harness bug."""
    from verify import gradients
    from verify.crosscheck import unbiasedness_disagreements

    symbolic_verdicts = {claim: v["verdict"] for claim, v in record["claims"].items() if claim in SYMBOLIC}
    problems = []
    if record.get("moments"):
        # one check over every family's sweep: a refutation needs a biased pair somewhere,
        # not in each family (a clamp may only show under heavy tails)
        every_pair = [m for sweep in record["moments"].values() for m in sweep]
        problems += [f"{name}: {p}" for p in unbiasedness_disagreements(symbolic_verdicts, every_pair)]
    if "gradients" in record:
        problems += [f"{name}: {p}" for p in gradients.symbolic_disagreements(symbolic_verdicts, record["gradients"])]
    return problems


def _shared_key(layer, estimator):
    """Cells with equal keys give equal results: catalog entries share value functions
    and implementations, so each distinct one is computed once."""
    if layer in ("symbolic", "moments"):
        return layer, str(estimator.expr)
    if layer == "floating":
        return layer, str(estimator.expr), estimator.numeric, estimator.fp_ulps
    if layer == "gradients":
        return layer, str(estimator.expr), estimator.usage
    return layer, estimator.name


def _needs_expression(layer):
    return layer in ("symbolic", "floating", "moments")


def collect(registry: dict, profile="ci", timeout=10.0, jobs=2, progress=None, layers=LAYERS) -> dict:
    from verify.expression import as_expression

    """Every layer (of ``layers``) over every estimator, run ``jobs`` cells at a time."""
    from verify.libraries import library_data

    names = sorted(registry)
    wanted = [(layer, name) for name in names for layer in LAYERS if layer in layers
              and not (registry[name].expr is None and _needs_expression(layer))]
    keys = {(layer, name): _shared_key(layer, registry[name]) for layer, name in wanted}
    tasks, seen = [], set()
    for cell in wanted:
        if keys[cell] not in seen:
            seen.add(keys[cell])
            tasks.append(cell)
    if "moments" in layers:
        tasks.append(("reproductions", None))
    calls = [((reproductions_layer, ()) if layer == "reproductions"
              else (_layer_task, (layer, registry[name], profile, timeout, 1 if jobs > 1 else None)))
             for layer, name in tasks]  # cells already run side by side: one process per sweep
    budget = 1800.0  # per cell: the floating layer enumerates every 16-bit input pair (minutes on a busy machine)
    computed = run_all(calls, budget, jobs=jobs, on_done=progress and (lambda i: progress(tasks[i], len(tasks))))
    by_key = {keys.get(cell, cell): result for cell, result in zip(tasks, computed)}
    results = [by_key[keys[cell]] for cell in wanted]
    tasks = list(wanted)
    if "moments" in layers:
        tasks.append(("reproductions", None))
        results.append(by_key[("reproductions", None)])
    sweeps = {}
    records = {name: {"expression": (None if registry[name].expr is None else str(as_expression(registry[name].expr))),
                      "source": registry[name].source, "description": registry[name].description,
                      "declared": list(registry[name].claims), "claims": {}, "errors": []} for name in names}
    reproduced = None
    gradient_mse: dict = {}
    for (layer, name), result in zip(tasks, results):
        if isinstance(result, (TimedOut, Failed)):
            message = f"{layer} layer: " + (f"timed out after {budget:g} s" if isinstance(result, TimedOut) else result.error)
            if name is None:
                reproduced = {"error": message}
            else:
                records[name]["errors"].append(message)
            continue
        if layer == "reproductions":
            reproduced = result
        elif layer in ("symbolic", "floating"):
            records[name]["claims"].update(result)
        elif layer == "gradients":
            records[name]["gradients"] = result["rows"]
            if "mse" in result:
                gradient_mse[name] = result["mse"]
            if "library" in result:
                sweeps[name] = result["library"]
        else:
            records[name][layer] = result
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
        "disagreements": disagreements,
        "choosing": choosing,
        **library_data(registry, sweeps),
    })


def choosing_data(records, gradient_mse=None) -> dict:
    """Which estimator to use (reports/choosing.md), from the exact layer's moments
    (value use) and the gradient layer's rows and softmax gradient MSEs (gradient use);
    see verify.choosing."""
    from verify.choosing import gradient_mse_rankings, gradient_rankings, value_rankings

    sweeps = {name: record["moments"] for name, record in records.items() if record.get("moments")}
    rows = {name: record["gradients"] for name, record in records.items() if record.get("gradients")}
    kl_by_regime = {row["regime"]: row["kl_qp"] for table in rows.values() for row in table
                    if row["family"] == "softmax"}
    return {"value": value_rankings(sweeps), "gradient": gradient_rankings(rows),
            "gradient_mse": gradient_mse_rankings(gradient_mse or {}, kl_by_regime)}
