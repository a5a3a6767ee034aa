"""Check the exact engine on a hard set of cells against mpmath references made here.

Not a test (it takes minutes): a tool to find wrong values and exceeded bounds.  Each cell
is computed by verify.layers.exact and, independently, by mpmath (scripts/make_hard_cell_references.py's
integrals and sums at 45 digits); a value must be within 1e-9 relative (variances 1e-5)
and within its stated error bound.

Run: python scripts/check_hard_cells.py [--jobs 2]
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import mpmath as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import make_hard_cell_references as refs  # noqa: E402

RTOL, VAR_RTOL = 1e-9, 1e-5

_C = [-30, -10, -5, -3, -1, -0.3, 0, 0.3, 1, 3, 5, 10, 30]
_H = [0.01, 0.1, 0.3, 1, 2, 4, 8, 16, 40]
_U = [0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999]
# (p, q, kind, cuts, log_tails)
CELLS = [
    ("norm(1e-4, 1)", "norm(0, 1)", "c", _C, None),
    ("norm(0.001, 1.0001)", "norm(0, 1)", "c", _C, None),
    ("norm(5, 0.5)", "norm(0, 1)", "c", _C, None),
    ("norm(-8, 1)", "norm(0, 1)", "c", _C, None),
    ("norm(-3, 2)", "norm(1, 1.5)", "c", _C, None),
    ("norm(0, 0.1)", "norm(0, 1)", "c", _C + [-0.1, 0.1], None),
    ("norm(0, 1.41)", "norm(0, 1)", "c", _C, None),
    ("norm(20, 1)", "norm(0, 1)", "c", _C + [15, 20, 25], None),
    ("laplace(0.001, 1)", "laplace(0, 1)", "c", _C + [0.001], None),
    ("laplace(3, 0.5)", "laplace(0, 1)", "c", _C + [3], None),
    ("laplace(0, 1.9)", "laplace(0, 1)", "c", _C, None),
    ("laplace(-4, 1)", "laplace(1, 1)", "c", _C + [-4], None),
    ("norm(0, 1)", "laplace(0, 1)", "c", _C, None),
    ("laplace(0, 1)", "norm(0, 1)", "c", _C, None),
    ("t(5, 0.1, 1)", "t(5, 0, 1)", "c", _C, (3, 10 ** 4)),
    ("t(1, 0, 1)", "t(1.5, 0, 1)", "c", _C, (3, 10 ** 4)),
    ("t(30, 2, 1)", "t(3, 0, 1)", "c", _C, (3, 10 ** 4)),
    ("t(4, 0, 1)", "laplace(0, 1)", "c", _C, (3, 10 ** 4)),
    ("norm(0, 1)", "t(2, 0, 1)", "c", _C, (3, 10 ** 4)),
    ("t(3, 0, 1)", "norm(0, 1)", "c", _C, (2, 10 ** 4)),
    ("t(10, 0, 1)", "norm(0, 1)", "c", _C, (2, 10 ** 4)),
    ("t(0.5, 0, 1)", "t(0.8, 0, 1)", "c", _C, (3, 10 ** 4)),
    ("gamma(0.1, scale=1)", "gamma(0.2, scale=1)", "h", [1e-8, 1e-4] + _H, None),
    ("gamma(0.5, scale=3)", "gamma(0.7, scale=1)", "h", _H, None),
    ("gamma(2, scale=0.5)", "gamma(2, scale=1)", "h", _H, None),
    ("gamma(20, scale=0.1)", "gamma(2, scale=1)", "h", _H, None),
    ("gamma(1, scale=1.9)", "gamma(1, scale=1)", "h", _H, None),
    ("gamma(3, 1, 1)", "gamma(2, 1, 2)", "h1", [1 + x for x in _H], None),
    ("beta(0.1, 0.1)", "beta(0.5, 0.5)", "u", _U, None),
    ("beta(0.2, 5)", "beta(0.3, 3)", "u", _U, None),
    ("beta(50, 50)", "beta(2, 2)", "u", _U + [0.45, 0.55], None),
    ("beta(1, 1)", "beta(1.5, 0.9)", "u", _U, None),
    ("poisson(1e-3)", "poisson(1e-2)", "p", None, None),
    ("poisson(100)", "poisson(101)", "p", None, None),
    ("poisson(1000)", "poisson(950)", "p", None, None),
    ("poisson(3)", "poisson(40)", "p", None, None),
    ("poisson(40)", "poisson(3)", "p", None, None),
    ("categorical(logits=[0, 700])", "categorical(logits=[700, 0])", "k", None, None),
    ("categorical(logits=[0, -696.9, 3])", "categorical(logits=[-696.9, 0, 3])", "k", None, None),
    ("categorical(logits=[1e-9, 0, 0])", "categorical(logits=[0, 0, 0])", "k", None, None),
    ("categorical(logits=[5, 4, 3, 2, 1, 0])", "categorical(logits=[5, 4, 3, -inf, -inf, -inf])", "k", None, None),
    ("categorical(logits=[5, -inf, 3, 2])", "categorical(logits=[5, 4, 3, 2])", "k", None, None),
    ("categorical(logits=[0, -inf, 0])", "categorical(logits=[-inf, 0, 0])", "k", None, None),
    ("categorical(logits=[-650, 0, -100, -300])", "categorical(logits=[0, -650, -300, -100])", "k", None, None),
    ("mixture(weights=[0.5, 0.5], components=[norm(0, 1), norm(30, 0.01)])", "norm(0, 1)", "c",
     _C + [29.9, 29.95, 29.99, 30, 30.01, 30.05, 30.1], None),
    ("mixture(weights=[0.99, 0.01], components=[norm(0, 1), norm(-12, 0.001)])", "norm(0, 1)", "c",
     _C + [-12.01, -12.003, -12, -11.997, -11.99], None),
    ("norm(0, 1)", "mixture(weights=[0.5, 0.5], components=[norm(-5, 1), norm(5, 1)])", "c", _C, None),
    ("mixture(weights=[0.3, 0.7], components=[laplace(-2, 0.5), laplace(2, 1)])", "laplace(0, 1)", "c",
     _C + [-2, 2], None),
    ("mixture(weights=[0.2, 0.8], components=[t(3, 5, 0.1), norm(0, 1)])", "t(4, 0, 1)", "c",
     _C + [4.9, 5, 5.1], (3, 10 ** 4)),
    ("gamma(2)", "norm(0, 1)", "h", _H, None),
    ("norm(0, 1)", "gamma(2)", "h", _H, None),
    ("beta(2, 2)", "norm(0.5, 1)", "u", _U, None),
    ("norm(0.5, 0.2)", "beta(2, 2)", "u", _U, None),
    ("gamma(2, loc=1)", "gamma(2)", "h", [1 + x for x in _H], None),
    ("gamma(2)", "gamma(2, loc=1)", "h1", [1 + x for x in _H], None),
    ("norm(0, 1)", "norm(1e-8, 1)", "c", _C, None),
    ("laplace(0, 1)", "laplace(1e-6, 1)", "c", _C + [1e-6], None),
    ("beta(0.5, 0.5)", "beta(0.5001, 0.5)", "u", _U, None),
    ("gamma(1000, scale=0.001)", "gamma(1000, scale=0.00101)", "h", [0.8, 0.9, 0.95, 1, 1.05, 1.1, 1.2, 2], None),
    ("poisson(10000)", "poisson(10100)", "p", None, None),
    ("categorical(logits=[0, -350, -700])", "categorical(logits=[-700, -350, 0])", "k", None, None),
]

ESTIMATORS = ("k1", "k3", "k4")


def _reference(p, q, kind, cuts, log_tails, g, outside_limit=None):
    if kind == "p":
        mu_p = float(p[len("poisson("):-1])
        mu_q = float(q[len("poisson("):-1])
        mu = max(mu_p, mu_q)
        return refs.poisson(mu_p, mu_q, g, int(mu + 60 * mu ** 0.5 + 300))
    if kind == "k":
        import ast

        def logits(spec):
            text = spec[len("categorical(logits="):-1].replace("-inf", "'-inf'")
            return [mp.ninf if v == "-inf" else v for v in ast.literal_eval(text)]
        return refs.categorical(logits(p), logits(q), g, with_outside=outside_limit)
    lo = {"c": -mp.inf, "h": 0, "h1": 1, "u": 0}[kind]
    hi = 1 if kind == "u" else mp.inf
    cuts = sorted({c for c in cuts if lo < c < hi})
    return refs.continuous(p, q, g, cuts, lo=lo, hi=hi, log_tails=log_tails)


def check(cell):
    from estimators import registry
    from verify.layers.exact import moments, parse_family
    from verify.core.expression import as_expression

    mp.mp.dps = refs.WORKING_DIGITS
    p_spec, q_spec, kind, cuts, log_tails = cell
    p, q = parse_family(p_spec), parse_family(q_spec)
    problems, checked = [], 0
    known = registry()
    for name in ESTIMATORS:
        result = moments(as_expression(known[name].expr), p, q)
        pairs = [("mean", refs.F[name], result.mean, result.mean_abs_error, RTOL)]
        if name == "k1":
            pairs += [("kl_qp", refs.KL_QP, result.kl_qp, result.kl_qp_abs_error, RTOL),
                      ("kl_pq", refs.KL_PQ, result.kl_pq, result.kl_pq_abs_error, RTOL)]
        for key, g, value, error, rtol in pairs:
            if not math.isfinite(value):
                continue  # infinite values: checked by the analytic cases in the tests
            if result.q_mass_outside_p > 0 and kind not in ("k",):
                continue  # the reference integrates over the common support only
            limit = {"k1": mp.inf, "k3": mp.inf, "k4": mp.log(2)}[name] if key == "mean" else mp.inf
            reference = _reference(p_spec, q_spec, kind, cuts, log_tails, g, outside_limit=limit)
            checked += 1
            deviation = abs(value - float(reference))
            if deviation > rtol * abs(float(reference)) + 1e-300 or deviation > error * (1 + 1e-12) + 1e-300:
                problems.append(f"{name} {key}: got {value!r} +- {error:.2g}, reference {mp.nstr(reference, 17)}")
        if name == "k3" and math.isfinite(result.variance) and result.q_mass_outside_p == 0:
            m = mp.mpf(result.mean)
            reference = _reference(p_spec, q_spec, kind, cuts, log_tails, lambda t: (refs.F["k3"](t) - m) ** 2)
            checked += 1
            deviation = abs(result.variance - float(reference))
            if deviation > VAR_RTOL * abs(float(reference)) or deviation > result.variance_abs_error + 1e-12 * abs(float(reference)):
                problems.append(f"k3 variance: got {result.variance!r} +- {result.variance_abs_error:.2g}, "
                                f"reference {mp.nstr(reference, 17)}")
    return p_spec, q_spec, checked, problems


def main():
    import multiprocessing

    jobs = int(sys.argv[sys.argv.index("--jobs") + 1]) if "--jobs" in sys.argv else 1
    cells = CELLS[int(sys.argv[sys.argv.index("--from") + 1]):] if "--from" in sys.argv else CELLS
    if "--only" in sys.argv:  # a substring of p or q
        word = sys.argv[sys.argv.index("--only") + 1]
        cells = [c for c in CELLS if word in c[0] or word in c[1]]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        results = pool.imap(check, cells)
        bad = 0
        total = 0
        for p, q, checked, problems in results:
            total += checked
            status = "ok" if not problems else "WRONG"
            bad += bool(problems)
            print(f"{status:5s} {p} | {q} ({checked} values)", flush=True)
            for problem in problems:
                print("      " + problem, flush=True)
    print(f"{len(cells)} cells, {total} values, {bad} cells with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
