"""Cost of the catalog of RL libraries' KL terms: each entry's library-mode gradient table
and near-to-far sweep (as `verify all` runs them, one cell per entry, fresh caches), and
the exact sequence-level analysis (V = 4, T = 3).

Run: python benchmarks/bench_catalog.py   (prints the figures; nothing is asserted)
"""
from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimators import registry  # noqa: E402


def _cell(name, queue):
    from verify.layers import gradients
    from verify.layers.gradients.libraries import library_task

    start = time.process_time()
    gradients.gradient_table(registry()[name])
    library_task(registry()[name])
    queue.put(time.process_time() - start)


def main() -> None:
    names = sorted(name for name, e in registry().items() if e.usage is not None)
    context = mp.get_context("fork")
    total = 0.0
    for name in names:
        queue = context.Queue()
        process = context.Process(target=_cell, args=(name, queue))
        process.start()
        seconds = queue.get()
        process.join()
        total += seconds
        print(f"  {name:<24} {seconds:7.2f} s CPU")
    from verify.layers.gradients.sequences import sequence_report

    start = time.process_time()
    sequence_report()
    sequences = time.process_time() - start
    print(f"catalog: {len(names)} entries, gradient tables + sweeps {total:.1f} s CPU in all "
          f"(shared (expression, usage) cells are computed once by verify all); "
          f"sequence analysis {sequences:.2f} s CPU")


if __name__ == "__main__":
    main()
