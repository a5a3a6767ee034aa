"""The documented sequence models of reports/sequences.md (issue 22), as logits tables.

Each sweep fixes q and moves p away from it: q's logits are independent standard normals
(numpy's PCG64 generator, a fixed seed per sweep), p's are q's plus ``spread`` times another
independent standard normal table (the same draw for every spread of a sweep, so the models
move apart along one direction).  A ``top_k`` sweep truncates q to its k largest logits per
row (the others -inf, as top-k sampling does), p keeps every token; the truncation is
applied after p is drawn from the untruncated q.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["SequenceSweep", "REPORT_SWEEPS", "REPORT_SPREADS", "LIBRARY_SPREADS", "BENCHMARK_MODEL", "model_tables"]

REPORT_SPREADS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
# the spreads (near, far) at which every catalog entry's sequence gradient is reported
LIBRARY_SPREADS = (0.2, 1.6)


@dataclass(frozen=True)
class SequenceSweep:
    name: str
    description: str
    vocabulary: int
    length: int
    seed: int
    spreads: tuple = REPORT_SPREADS
    top_k: int | None = None

    def as_json(self) -> dict:
        return {**asdict(self), "spreads": list(self.spreads), "sequences": self.vocabulary ** self.length}


REPORT_SWEEPS = (
    SequenceSweep("small_vocabulary", "V = 4 tokens, T = 4 positions", 4, 4, seed=2201),
    SequenceSweep("large_vocabulary", "V = 16 tokens, T = 4 positions", 16, 4, seed=2202),
    SequenceSweep("top_k_truncated_q", "V = 8 tokens, T = 3 positions, q truncated to its top 3 tokens per prefix",
                  8, 3, seed=2203, top_k=3),
)
# the size of the benchmark (benchmarks/bench_sequences.py): 262,144 sequences
BENCHMARK_MODEL = SequenceSweep("benchmark", "V = 8 tokens, T = 6 positions", 8, 6, seed=2204, spreads=(0.5,))


def model_tables(sweep: SequenceSweep, spread: float):
    """(p_logits, q_logits) of ``sweep`` at ``spread`` (float64, the layout of sequence_tree)."""
    rows = (sweep.vocabulary ** sweep.length - 1) // (sweep.vocabulary - 1)
    generator = np.random.default_rng(sweep.seed)
    q = generator.standard_normal((rows, sweep.vocabulary))
    direction = generator.standard_normal((rows, sweep.vocabulary))
    p = q + spread * direction
    if sweep.top_k is not None:
        cut = np.sort(q, axis=1)[:, -sweep.top_k][:, None]
        q = np.where(q >= cut, q, -np.inf)
    return p, q
