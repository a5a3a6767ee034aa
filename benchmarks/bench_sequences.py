"""Time of `verify sequences` on a V = 8, T = 6 model (262,144 sequences): k1, k2, k3, every
block (KLs, Monte Carlo and Rao-Blackwellised moments, control variate, gradients), through
the public API (target <= 20 s on 2 cores).

Also timed: the same with every catalog entry's sequence gradient (``--gradients all``:
every on-policy library mode), and a torch term called on every sequence (``--term``; skipped without torch).

Run: python benchmarks/bench_sequences.py   (prints the figures; nothing is asserted)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verify.api.sequences import sequences  # noqa: E402
from verify.layers.gradients.sequence_examples import BENCHMARK_MODEL, model_tables  # noqa: E402

TARGET_SECONDS = 20.0
REPEATS = 3


def main() -> None:
    p, q = model_tables(BENCHMARK_MODEL, BENCHMARK_MODEL.spreads[0])
    sequences(None, p_logits=p[:73], q_logits=q[:73])  # imports and compilation, outside the timing (V = 8, T = 3)
    times, cpu = [], []
    for _ in range(REPEATS):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = sequences("k1,k2,k3", p_logits=p, q_logits=q)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    best = min(times)
    print(f"V = {result.vocabulary}, T = {result.length}: {result.sequences:,} sequences, k1, k2, k3, all blocks")
    print(f"  KL(q||p) = {result.kl_qp:.12g} ± {result.kl_qp_abs_error:.1g}, "
          f"k3 loss cosine = {result.gradients['k3_loss']['cosine_to_grad_kl_qp']:.6f}")
    print(f"  wall: best {best:.2f} s, median {sorted(times)[len(times) // 2]:.2f} s of {REPEATS}; "
          f"CPU {min(cpu):.2f} s (target <= {TARGET_SECONDS:g} s: {'met' if best <= TARGET_SECONDS else 'MISSED'})")
    start = time.perf_counter()
    result = sequences("k1,k2,k3", p_logits=p, q_logits=q, gradients="all")
    rows = sum(":" in name for name in result.gradients)
    print(f"  with every catalog entry's gradient ({rows} rows): {time.perf_counter() - start:.2f} s")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("  torch term: skipped (torch is not installed)")
        return
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "term.py"
        path.write_text("import torch\n\ndef k3(logp, ref_logp):\n    d = ref_logp - logp\n"
                        "    return torch.exp(d) - 1 - d\n")
        start = time.perf_counter()
        result = sequences("k1", p_logits=p, q_logits=q, term=f"{path}:k3")
        print(f"  a torch term on all {result.sequences:,} x {result.length} tokens (isolated worker, float64 and "
              f"float32 calls): {time.perf_counter() - start:.2f} s, cosine "
              f"{result.gradients['k3:loss']['cosine_to_grad_kl_qp']:.6f}")


if __name__ == "__main__":
    main()
