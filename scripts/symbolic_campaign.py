"""A random campaign for the symbolic prover: undecided rate per claim, and wrong verdicts
found by an independent mpmath oracle.

Expressions are drawn (seeded, so the campaign is the same every run) from the kinds
of the hard symbolic cases: control variates, f-divergence generators, clamps inside and
far beyond the scanned range, near-identities, growth edge cases, kinks and cusps.
Every verdict is compared with the oracle, which shares nothing with verify.layers.symbolic or
verify.layers.symbolic.certified: it evaluates f through sympy's lambdify at 50 digits on a dense grid
in log r, and checks each claim's definition (or its characterisation) on that grid.
A "proved" claim the oracle sees fail, or a "refuted" claim whose counterexample does
not re-check (tests/recheck.py), is a wrong verdict.

Run (``--tree``: the source tree whose ``verify`` is tested, default this repository; a
copy of an older commit gives the baseline, e.g. ``git archive main | tar -x -C /tmp/base``):
    python scripts/symbolic_campaign.py [--count 40] [--seed 11] [--tree DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import mpmath
import sympy as sp

ROOT = Path(__file__).resolve().parent.parent


def _tree_from_argv():
    """--tree must take effect before verify is imported."""
    for i, arg in enumerate(sys.argv):
        if arg == "--tree" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--tree="):
            return arg.split("=", 1)[1]
    return str(ROOT)


sys.path.insert(0, _tree_from_argv())
sys.path.insert(1, str(ROOT / "tests"))  # the re-check is this repository's, whatever the tree

from recheck import recheck  # noqa: E402
from verify.core.claims import SYMBOLIC  # noqa: E402
from verify.core.expression import RATIO, parse_with_domain  # noqa: E402

ATOMS = [
    "-log(r)", "log(r)**2/2", "(r - 1) - log(r)", "r*log(r) - (r - 1)", "(sqrt(r) - 1)**2",
    "(r - 1)**2/2", "log((r - 1)**2 + 1)", "Abs(log(r))", "Abs(r - 1)", "r - 1", "sqrt(Abs(r - 1))",
    "r*log(r) - (r + 1)*log((r + 1)/2)", "exp(-r)", "log(r)**3", "r**(r - 1) - 1", "1/(r + 1)",
    "log(1 + r)", "sqrt(r**2 + 1)", "(r - 1)**2*exp(-r)", "r**0.5*log(r)",
]
CLAMPS = ["Min({e}, {c})", "Max({e}, -{c})", "Min(Max({e}, -{c}), {c})"]
CLAMP_CONSTANTS = ["1", "10", "50", "200", "1000"]
COEFFICIENTS = ["1", "2", "1/2", "-1", "3/4", "-1/3", "1e-6"]


def random_expression(rng: random.Random) -> str:
    """One expression: a sum of one to three weighted atoms, sometimes clamped or shifted."""
    kind = rng.random()
    if kind < 0.15:  # control variate: unbiased for KL(q||p) for every c
        return f"-log(r) + {rng.choice(COEFFICIENTS)}*(r - 1)"
    terms = [f"{rng.choice(COEFFICIENTS)}*({rng.choice(ATOMS)})" for _ in range(rng.randint(1, 3))]
    text = " + ".join(terms)
    if rng.random() < 0.3:
        text = rng.choice(CLAMPS).format(e=text, c=rng.choice(CLAMP_CONSTANTS))
    if rng.random() < 0.15:  # near-identity: a tiny shift or a tiny extra term
        text = f"{text} + {rng.choice(['1e-12', '-1e-12', '1e-9*log(r)**2', '-1e-30'])}"
    return text


# ----------------------------------------------------------------------- the oracle

GRID = [mpmath.mpf(k) / 8 for k in range(-8 * 40, 8 * 40 + 1)] + [sign * mpmath.mpf(10) ** -k
                                                                 for k in range(1, 10) for sign in (1, -1)]
FAR = [60, 120, 300, 700]
TOL = mpmath.mpf(10) ** -30


def oracle(expr) -> dict:
    """claim -> True / False / None (the grid cannot tell) from mpmath at 50 digits."""
    with mpmath.workdps(50):
        fast = sp.lambdify(RATIO, expr, modules="mpmath")

        def f(x):
            try:
                value = fast(x)
            except (ValueError, ZeroDivisionError, TypeError):
                return None
            value = mpmath.mpmathify(value)  # min/max may hand back a plain int
            if not isinstance(value, mpmath.mpf) or not mpmath.isfinite(value):
                return None
            return value

        def slope(x, order=1):
            try:
                return mpmath.diff(f, x, order, h=x * mpmath.mpf(10) ** -12)
            except (TypeError, ValueError, ZeroDivisionError):
                return None

        us = sorted(set(GRID))
        points = [mpmath.exp(u) for u in us]
        values = [f(x) for x in points]
        if any(v is None for v in values):  # the grid cannot evaluate f: no opinion
            return {claim: None for claim in SYMBOLIC}
        f_one = f(mpmath.mpf(1))
        result = {"zero_at_one": abs(f_one) < TOL}
        result["nonnegative"] = all(v >= -TOL for v in values)
        result["unique_minimum_at_one"] = all(v > f_one + TOL or x == 1 for x, v in zip(points, values))
        convex = True
        for i in range(1, len(us) - 1):  # midpoint test on neighbouring grid points in r
            a, b = points[i - 1], points[i + 1]
            middle = f((a + b) / 2)
            if middle is not None and middle - (f(a) + f(b)) / 2 > TOL * (1 + abs(middle)):
                convex = False
                break
        result["convex"] = convex
        for claim, power in (("subexponential_growth", 8), ("linear_growth_in_log_ratio", 1)):
            ratios = []
            for u in FAR:
                for sign in (1, -1):
                    value = f(mpmath.exp(sign * mpmath.mpf(u)))
                    ratios.append(None if value is None else abs(value) / (1 + mpmath.mpf(u) ** power))
            if None in ratios:
                result[claim] = None
            else:  # growth shows as ratios that keep increasing out to |log r| = 700
                near = max(ratios[0:2])
                far = max(ratios[-2:])
                result[claim] = None if 1e-3 < far / (near + 1) < 1e3 and far > 10 else far <= 10 * (near + 1)
        samples = [mpmath.mpf(x) for x in ("0.01", "0.3", "0.7", "1.5", "3", "40")]

        def constant(h):
            values = [h(x) for x in samples]
            if any(v is None for v in values):
                return None
            return max(values) - min(values) < mpmath.mpf(10) ** -8

        result["unbiased_kl_qp"] = result["zero_at_one"] and constant(lambda x: (f(x) + mpmath.log(x)) / (x - 1))
        result["unbiased_kl_pq"] = result["zero_at_one"] and constant(lambda x: (f(x) - x * mpmath.log(x)) / (x - 1))
        result["reward_grad_kl_qp"] = constant(lambda x: f(x) + mpmath.log(x))

        def grad(shift):
            def h(x):
                s = slope(x)
                return None if s is None else x * s - shift(x)
            return constant(h)
        result["loss_grad_zero"] = grad(lambda x: 0)
        result["loss_grad_kl_qp"] = grad(mpmath.log)
        result["loss_grad_kl_pq"] = grad(lambda x: x)
        one = mpmath.mpf(1)
        left = mpmath.diff(f, one, 1, direction=-1, h=mpmath.mpf(10) ** -15) if result["zero_at_one"] else None
        right = mpmath.diff(f, one, 1, direction=1, h=mpmath.mpf(10) ** -15) if result["zero_at_one"] else None
        if not result["zero_at_one"]:
            result["locally_unbiased"] = False
        elif abs(left - right) > mpmath.mpf(10) ** -6:
            result["locally_unbiased"] = False
        else:
            second = slope(one, 2)
            result["locally_unbiased"] = None if second is None else abs(second - 1) < mpmath.mpf(10) ** -6
        return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", help="write every verdict to this file")
    parser.add_argument("--tree", default=str(ROOT), help="source tree to test (default: this repository)")
    parser.add_argument("--timeout", type=float, default=None, help="per-claim limit (default: the prover's)")
    args = parser.parse_args(argv)
    from verify.layers.symbolic import decide

    print(f"verify from {Path(sys.modules['verify'].__file__).parent}", flush=True)
    rng = random.Random(args.seed)
    texts = []
    while len(texts) < args.count:
        text = random_expression(rng)
        if text not in texts:
            texts.append(text)
    undecided = {claim: 0 for claim in SYMBOLIC}
    wrong, records, total = [], [], 0
    start = time.time()
    for text in texts:
        expr, domain = parse_with_domain(text)
        options = {"domain": domain}
        if args.timeout is not None:
            options["timeout"] = args.timeout
        verdicts = decide(expr, list(SYMBOLIC), **options)
        truth = oracle(expr)
        for claim, verdict in verdicts.items():
            total += 1
            if verdict.verdict == "undecided":
                undecided[claim] += 1
            elif verdict.verdict == "proved" and truth[claim] is False:
                wrong.append((text, claim, "proved, oracle sees it fail"))
            elif verdict.verdict == "refuted" and not recheck(expr, claim, verdict.counterexample):
                if not (claim in ("subexponential_growth", "linear_growth_in_log_ratio") and "r" not in verdict.counterexample):
                    wrong.append((text, claim, "refuted, counterexample does not re-check"))
            records.append({"expr": text, "claim": claim, "verdict": verdict.verdict, "method": verdict.method,
                            "detail": verdict.detail, "oracle": truth[claim]})
        print(f"{sum(v.verdict == 'undecided' for v in verdicts.values()):2d} undecided  {text}", flush=True)
    print(f"\n{len(texts)} expressions, {total} verdicts, {time.time() - start:.0f} s wall")
    for claim in SYMBOLIC:
        print(f"  {claim:28s} undecided {undecided[claim]:3d} / {len(texts)}  ({100 * undecided[claim] / len(texts):.1f}%)")
    print(f"  all claims: undecided {sum(undecided.values())} / {total} ({100 * sum(undecided.values()) / total:.1f}%)")
    print(f"wrong verdicts: {len(wrong)}")
    for item in wrong:
        print("  WRONG", *item)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
