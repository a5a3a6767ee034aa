"""What a 16-bit sweep found (``ExhaustiveTally``), and how the parts of a sweep add up
to the same whole however the pairs were split into chunks, blocks and workers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_UNKNOWN = 20_000  # pairs settled one by one in mpmath before a claim is left undecided
EXAMPLES_KEPT = 8  # failing pairs kept per claim (worst first), for counterexamples


@dataclass
class ExhaustiveTally:
    """What the enumeration found, per claim."""

    pairs: int = 0
    values_per_dtype: int = 0
    failures: dict = field(default_factory=dict)  # claim -> number of failing pairs
    examples: dict = field(default_factory=dict)  # claim -> [(severity, logp, logq)], worst first
    settled_by_mpmath: int = 0
    unsettled: dict = field(default_factory=dict)  # claim -> pairs neither the enclosure nor mpmath settled
    undefined: int = 0  # pairs where f is undefined at the exact inputs
    worst_ulps: tuple = (0.0, None, None)  # (error in ulps, logp, logq): approximate, refined by the caller
    worst_abs: tuple = (0.0, None, None)
    # the first MAX_UNKNOWN pairs (in row order) the enclosure did not settle, as
    # (logp, logq, value, claims), waiting for the exact judge (empty once judged)
    unknown: list = field(default_factory=list)
    implementation_cpu: float = 0.0  # CPU seconds inside the implementation (every worker's): for the benchmark


def example_order(example):
    severity, logp, logq = example
    return -severity, -logq, -logp


def keep_examples(tally, claim, bad, severity, logp, logq):
    """Count the failing pairs ``bad`` and keep the EXAMPLES_KEPT worst failures seen so
    far: largest severity first, then log q nearest 0, then log p nearest 0 (the sweep's
    row order in the domain [-60, 0]).  That order is total, so what is kept does not
    depend on how the pairs were split into chunks (or workers).  ``severity``: an array
    for every pair (NaN counts as +inf), or a function giving it at the failing ones."""
    kept = tally.examples.setdefault(claim, [])
    full = not callable(severity)
    if full and len(kept) >= EXAMPLES_KEPT:  # cheap: only what may beat the last one kept
        count = int(np.count_nonzero(bad))
        index = np.flatnonzero(bad & ~(severity < kept[-1][0]))
    else:
        index = np.flatnonzero(bad)
        count = len(index)
    if not count:
        return
    tally.failures[claim] = tally.failures.get(claim, 0) + count
    if len(index):
        keep_worst(kept, severity[index] if full else severity(index), logp[index], logq[index])


def keep_worst(kept, severity, at_p, at_q):
    """Merge failing pairs (their severities, NaN as +inf, and inputs) into ``kept``, the
    EXAMPLES_KEPT worst so far in ``example_order``."""
    severity = np.asarray(severity, dtype=np.float64)
    severity = np.where(np.isnan(severity), np.inf, severity)
    if len(kept) >= EXAMPLES_KEPT:  # only what beats the last one kept
        last, last_p, last_q = kept[-1]
        better = (severity > last) | ((severity == last) & ((at_q > last_q) | ((at_q == last_q) & (at_p > last_p))))
        if not better.any():
            return
        severity, at_p, at_q = severity[better], at_p[better], at_q[better]
    if len(severity) > EXAMPLES_KEPT:
        best = np.lexsort((-at_p, -at_q, -severity))[:EXAMPLES_KEPT]
        severity, at_p, at_q = severity[best], at_p[best], at_q[best]
    kept += zip(severity.tolist(), at_p.tolist(), at_q.tolist())
    kept.sort(key=example_order)
    del kept[EXAMPLES_KEPT:]


def merge_part(tally, part):
    """Add one block's tally to the whole (blocks arrive in row order)."""
    tally.pairs += part.pairs
    for claim, count in part.failures.items():
        tally.failures[claim] = tally.failures.get(claim, 0) + count
    for claim, examples in part.examples.items():
        kept = tally.examples.setdefault(claim, [])
        kept += examples
        kept.sort(key=example_order)
        del kept[EXAMPLES_KEPT:]
    if part.worst_ulps[0] > tally.worst_ulps[0]:
        tally.worst_ulps = part.worst_ulps
    if part.worst_abs[0] > tally.worst_abs[0]:
        tally.worst_abs = part.worst_abs
    for claim, count in part.unsettled.items():
        tally.unsettled[claim] = tally.unsettled.get(claim, 0) + count
    tally.implementation_cpu += part.implementation_cpu
    room = max(0, MAX_UNKNOWN - len(tally.unknown))
    tally.unknown += part.unknown[:room]
    for *_, which in part.unknown[room:]:
        for claim in which:
            tally.unsettled[claim] = tally.unsettled.get(claim, 0) + 1
