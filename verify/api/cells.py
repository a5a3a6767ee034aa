"""The cells of ``verify all``, as the runner (``verify.run``) calls them: one layer for
one estimator, each through the same API calls as ``verify check`` and ``verify
gradients``, so that a report row and a CLI line come from one computation.  Returns
data only (JSON-ready, or the exact layer's ``Moments`` records, which ``CACHED_TYPES``
lets the runner's cache store)."""
from __future__ import annotations

from verify.core.claims import BACKWARD, DTYPES, FLOATING, SYMBOLIC


def symbolic_cell(estimator, timeout) -> dict:
    """Every symbolic claim's verdict (one claim at a time: the cells run side by side)."""
    from verify.api.verdicts import check

    verdicts = check(estimator, list(SYMBOLIC), timeout=timeout, jobs=1).verdicts
    return {claim: verdict.as_json() for claim, verdict in verdicts.items()}


def floating_cell(estimator, profile, sweep_workers=None, dtypes=DTYPES) -> dict:
    """The floating-point verdicts in ``dtypes`` (a cell is one dtype), and the backward-pass
    ones in the 16-bit dtypes of an implementation with autograd (a catalog entry's
    ``numeric_grad``); ``sweep_workers``: processes per 16-bit sweep (None: every core)."""
    from verify.api.inputs import has_autograd
    from verify.api.verdicts import check

    if estimator.numeric is None:
        return {}
    claims = [f"{c}@{d}" for c in FLOATING for d in dtypes]
    if has_autograd(estimator):
        claims += [f"{c}@{d}" for c in BACKWARD for d in dtypes if d in ("float16", "bfloat16")]
    verdicts = check(estimator, claims, profile=profile, sweep_workers=sweep_workers).verdicts
    return {claim: verdict.as_json() for claim, verdict in verdicts.items()}


def moments_cell(estimator) -> dict:
    """family -> the exact moments over the family's sweep of pairs (``Moments`` records)."""
    from verify.core.expression import as_expression
    from verify.layers import exact

    expr = as_expression(estimator.expr)
    return {family: exact.sweep_moments(expr, family) for family in exact.SWEEP_FAMILIES}


def gradients_cell(estimator) -> dict:
    """The gradient rows ``verify gradients NAME`` prints (the same call: a catalog entry as
    its library uses it, a built-in estimator in every generic mode); for a built-in
    estimator the exact MSE of its loss and reward gradients on the softmax pairs (for
    reports/choosing.md), for a catalog entry its library sweep (reports/libraries.md)."""
    from verify.api.expected_gradients import gradients
    from verify.core.expression import as_expression
    from verify.layers.gradients import softmax_gradient_mse_table

    rows = [row.as_row() for row in gradients(estimator).rows]
    result = {"rows": rows}
    if estimator.usage is None:  # the built-in estimators are the ones reports/choosing.md compares
        expr = as_expression(estimator.expr)
        result["mse"] = {mode: softmax_gradient_mse_table(expr, mode) for mode in ("loss", "reward")}
    else:  # a catalog entry: the libraries report's sweep reuses this process's compiled modes
        from verify.layers.gradients.libraries import library_task

        result["library"] = library_task(estimator)
    return result


def reproductions_cell():
    """The exact layer's reproductions of published figures."""
    from verify.layers import exact

    return exact.reproductions()


# (p, q) of reports/sequences.md's one-pair control variate: Schulman's two normal pairs
# (seed 002_3e37b01d90c29fc5.txt) and a p wider than q (E_q[r^2] infinite)
CONTROL_VARIATE_PAIRS = (("norm(0.1, 1)", "norm(0, 1)"), ("norm(1, 1)", "norm(0, 1)"), ("norm(0, 2)", "norm(0, 1)"))


def sequences_cell() -> dict:
    """reports/sequences.md's data: ``verify sequences`` (k1, k2, k3) on each documented
    model (verify.layers.gradients.sequence_examples), with every catalog entry's gradient
    rows at LIBRARY_SPREADS, and ``verify moments --control-variate`` on CONTROL_VARIATE_PAIRS."""
    from verify.api.control_variate import pair_control_variate
    from verify.api.sequences import sequences
    from verify.layers.exact import parse_family
    from verify.layers.gradients.sequence_examples import LIBRARY_SPREADS, REPORT_SWEEPS, model_tables

    sweeps = []
    for sweep in REPORT_SWEEPS:
        models = []
        for spread in sweep.spreads:
            p, q = model_tables(sweep, spread)
            catalog = "all" if spread in LIBRARY_SPREADS else None
            models.append({"spread": spread, **sequences(None, p_logits=p, q_logits=q, gradients=catalog).as_json()})
        sweeps.append({**sweep.as_json(), "models": models})
    pairs = [{"p": p, "q": q, **pair_control_variate(parse_family(p), parse_family(q)).as_json()}
             for p, q in CONTROL_VARIATE_PAIRS]
    return {"sweeps": sweeps, "pairs": pairs}


def gradient_disagreements(symbolic_verdicts: dict, rows) -> list[str]:
    """Where the gradient rows contradict the symbolic gradient verdicts (a harness bug)."""
    from verify.layers.gradients import symbolic_disagreements

    return symbolic_disagreements(symbolic_verdicts, rows)


def library_data(registry, sweeps) -> dict:
    """The libraries report's data: each catalog entry's usage and sweeps (plain data)."""
    from verify.layers.gradients.libraries import library_data as data

    return data(registry, sweeps)


def cached_types() -> dict:
    """{tag: dataclass} of the layer records a cell may return, for the runner's cache."""
    from verify.layers.exact.moments import Moments

    return {"moments": Moments}
