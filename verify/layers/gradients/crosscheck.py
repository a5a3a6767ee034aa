"""The cross-check with the symbolic layer: its gradient verdicts, taken as plain data, against
the exact gradients (a disagreement is a harness bug)."""
from __future__ import annotations

from verify.layers.gradients.verdicts import GradientResult

_CLAIM_CHECKS = {
    "loss_grad_zero": ("loss", "zero"),
    "loss_grad_kl_qp": ("loss", "kl_qp"),
    "loss_grad_kl_pq": ("loss", "kl_pq"),
    "reward_grad_kl_qp": ("reward", "kl_qp"),
}


def symbolic_disagreements(symbolic_verdicts: dict, results, *, fixed_pairs: bool = True) -> list[str]:
    """Where the symbolic gradient verdicts and these numbers disagree (a harness bug).

    A ``proved`` claim must hold on every pair of its mode; a ``refuted`` one must fail
    on at least one pair of the fixed sweep, chosen so that every refuted claim of the
    registry shows (``fixed_pairs=False``, given pairs: only ``proved`` is checked, since a
    refuted claim may hold on a given pair).  Other verdicts, claims outside the gradient claims, and modes
    absent from ``results`` are not checked.  ``results`` are rows of gradient_table
    (dicts) or GradientResult objects.
    """
    rows = [r.as_row() if isinstance(r, GradientResult) else r for r in results]
    rows = [r for r in rows if r.get("generic", True)]  # a library's weights change the gradient
    problems = []
    for claim in sorted(symbolic_verdicts):
        if claim not in _CLAIM_CHECKS:
            continue
        verdict = symbolic_verdicts[claim]
        mode, expected = _CLAIM_CHECKS[claim]
        relevant = [r for r in rows if r["mode"] == mode]
        if not relevant:
            continue
        mismatches = [r for r in relevant if r["gradient_of"] != expected]
        if verdict == "proved" and mismatches:
            r = mismatches[0]
            problems.append(
                f"{claim}: symbolic 'proved' but the exact {mode} gradient on {r['family']}/{r['regime']} "
                f"is {r['gradient_of']!r}, not {expected!r} ({len(mismatches)} of {len(relevant)} pairs)")
        elif verdict == "refuted" and not mismatches and fixed_pairs:
            problems.append(
                f"{claim}: symbolic 'refuted' but the exact {mode} gradient is {expected!r} "
                f"on all {len(relevant)} pairs of the sweep")
    return problems
