"""Time of both backward-pass claims (fp_grad_finite, fp_grad_accurate) for one torch term
in one 16-bit dtype over the whole default domain [-60, 0]: every pair enumerated, the
gradient by torch autograd in chunks, the exact gradient enclosed in float64.

The term: k3 with the log ratio bounded before exp, computed in float32 from the 16-bit
inputs (OpenRLHF's fix): t = clamp(logp - logq, -10, 10), exp(t) - 1 - t, cast back.

Run: python benchmarks/bench_backward.py [--dtype float16] [--term bounded|clamp_after]
(prints the figures and the verdicts; nothing is asserted).  A torch implementation is
swept in one process (forking after torch started its thread pools can deadlock).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verify.core.reproducible import pin_numpy_dispatch  # noqa: E402

pin_numpy_dispatch()  # the numbers `verify all` gives, on any machine

from verify.layers.floating import check_callable  # noqa: E402

TERMS = {
    "bounded": "exp(Min(Max(log(r), -10), 10)) - 1 - Min(Max(log(r), -10), 10)",
    "clamp_after": "Min(Max(r - 1 - log(r), -10), 10)",
}


def bounded(logp, logq):
    import torch

    t = torch.clamp(logp.float() - logq.float(), -10, 10)
    return (torch.exp(t) - 1 - t).to(logp.dtype)


def clamp_after(logp, logq):
    import torch

    t = logp - logq
    return torch.clamp(torch.exp(t) - 1 - t, -10, 10)


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"))
    parser.add_argument("--term", default="bounded", choices=tuple(TERMS))
    options = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    function = {"bounded": bounded, "clamp_after": clamp_after}[options.term]
    start, cpu = time.perf_counter(), _cpu()
    verdicts = check_callable(function, TERMS[options.term], options.dtype,
                              claims=("fp_grad_finite", "fp_grad_accurate"), framework="torch",
                              domain=(-60.0, 0.0))
    wall, used = time.perf_counter() - start, _cpu() - cpu
    print(f"{options.term} {options.dtype}: {wall:.1f} s wall, {used:.1f} s CPU")
    for claim, verdict in verdicts.items():
        print(f"  {claim}: {verdict.verdict} ({verdict.method}) {verdict.detail.split(';')[0]}")


if __name__ == "__main__":
    main()
