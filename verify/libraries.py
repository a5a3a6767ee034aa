"""Data for the libraries report (issue 14): each catalog entry's usage as plain data,
its expected gradients across a near-to-far sweep, and the sequence-level analysis.
Returns data only; verify/report_libraries.py renders it."""
from __future__ import annotations

__all__ = ["library_task", "library_data"]


def library_task(estimator) -> list[dict]:
    """The near-to-far sweep of one catalog entry (a cell of ``verify all``)."""
    from verify import gradients

    return gradients.library_sweep(estimator)


def _usage_record(estimator) -> dict:
    from verify.gradients import weight_description

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
    from verify.sequences import sequence_report

    entries = {}
    for name in sorted(registry):
        if registry[name].usage is None:
            continue
        entries[name] = {**_usage_record(registry[name]), "sweep": sweeps.get(name)}
    if not entries:
        return {}
    data = {"libraries": entries}
    if sweeps:
        data["sequences"] = sequence_report()
    return data
