"""Cross-checks between layers, on plain data: a disagreement is a harness bug.

The symbolic layer's verdicts arrive as a dict claim -> verdict string; the exact
layer's results as Moments.  Neither layer is imported here beyond the data it returns.
"""
from __future__ import annotations

import math

__all__ = ["unbiasedness_disagreements", "BIAS_MARGIN"]

# A bias counts as shown only beyond this multiple of its error bound (error bounds are
# upper bounds, so 1 would do; 2 keeps a refutation clear of the bound itself).
BIAS_MARGIN = 2.0

_CLAIMS = (("unbiased_kl_qp", "kl_qp", "bias_qp", "kl_qp_abs_error", "KL(q||p)"),
           ("unbiased_kl_pq", "kl_pq", "bias_pq", "kl_pq_abs_error", "KL(p||q)"))


def _bound(result, kl_error_field):
    return result.mean_abs_error + getattr(result, kl_error_field, 0.0)


def unbiasedness_disagreements(symbolic_verdicts: dict, sweep_results: list) -> list[str]:
    """Messages naming each pair where the exact moments contradict a symbolic verdict on
    ``unbiased_kl_qp`` / ``unbiased_kl_pq``; an empty list means the layers agree.

    proved: every pair with a finite mean and KL must have |bias| within its error bound.
    refuted: some pair must show |bias| beyond BIAS_MARGIN times its error bound.
    Other verdicts (undecided, ...) are not checked.
    """
    messages = []
    for claim, kl_field, bias_field, error_field, label in _CLAIMS:
        verdict = symbolic_verdicts.get(claim)
        usable = [m for m in sweep_results
                  if math.isfinite(m.mean) and math.isfinite(getattr(m, kl_field))]
        if verdict == "proved":
            for m in usable:
                bias, bound = getattr(m, bias_field), _bound(m, error_field)
                if not abs(bias) <= bound:
                    messages.append(
                        f"{claim}: symbolic layer proved it, but for p = {m.p}, q = {m.q} the exact mean "
                        f"{m.mean!r} differs from {label} = {getattr(m, kl_field)!r} by {bias:.3g} "
                        f"(error bound {bound:.3g})")
        elif verdict == "refuted":
            shown = [m for m in usable if abs(getattr(m, bias_field)) > BIAS_MARGIN * _bound(m, error_field)]
            if not shown:
                if usable:
                    worst = max(usable, key=lambda m: abs(getattr(m, bias_field)) / max(_bound(m, error_field), 1e-300))
                    where = (f"; largest |bias| {abs(getattr(worst, bias_field)):.3g} at p = {worst.p}, "
                             f"q = {worst.q} (error bound {_bound(worst, error_field):.3g})")
                else:
                    where = "; no pair of the sweep has a finite mean and KL"
                messages.append(f"{claim}: symbolic layer refuted it, but no pair of the sweep shows a bias "
                                f"against {label} beyond its error bound{where}")
    return messages
