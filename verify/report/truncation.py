"""The reports' section on truncated sampling (top-k / top-p): what it does to each bias.

Plain prose and a table of identities, independent of any run (so the reports stay a pure
function of results.json); ``verify moments`` computes the numbers for a given pair
(``p_mass_outside_q`` in its JSON).
"""
from __future__ import annotations

__all__ = ["truncation_section"]


def truncation_section() -> list[str]:
    """Markdown lines: top-k / top-p sampling and each estimator's bias."""
    return [
        "## Truncated sampling (top-k, top-p)",
        "",
        "With top-k or top-p sampling, q gives zero probability to most of the vocabulary while the "
        "reference p does not. Write S for the tokens q can sample and m = p(outside S), the reference's "
        "mass that is never sampled (`p_mass_outside_q` in `verify moments --json`). Sums over x ~ q only "
        "see S, so:",
        "",
        "| estimator | E_q[f] under truncation | against KL(q‖p) | against KL(p‖q) |",
        "|---|---|---|---|",
        "| k1 = −log r | KL(q‖p) | unbiased (KL(q‖p) is a sum over S) | KL(p‖q) = ∞: no finite estimate |",
        "| k3 = (r − 1) − log r | KL(q‖p) − m (since Σ_S p = 1 − m) | **underestimates by m** | ∞ |",
        "| k2 = (log r)²/2 | Σ_S q (log r)²/2 | biased as without truncation | ∞ |",
        "| K4 = log((r − 1)² + 1) | Σ_S q K4(r) | biased; m enters only through r on S | ∞ |",
        "| kl_pq = r log r − (r − 1) | Σ_S p log(p/q) + m | — | ∞ (the estimate stays finite) |",
        "",
        "So under top-k / top-p sampling k3 is no longer unbiased for KL(q‖p): it is low by exactly the "
        "reference's mass outside the sampled set, and k1 − k3 estimates that mass. No estimator that only "
        "sees samples of q can estimate KL(p‖q), which is infinite. The other way round (the reference p "
        "truncated, q not), q samples tokens with r = 0: KL(q‖p) = ∞, k1 and k3 are +∞ there, and bounded "
        "estimators (K4, a clamped k3) stay finite, hence infinitely biased.",
        "",
    ]
