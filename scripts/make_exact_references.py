"""Write tests/data/exact_references.json: 40-digit references for the exact layer.

Independent of verify.layers.exact: densities are written out here in mpmath, estimators are
evaluated from their sympy expressions in r with mpmath at 50 digits, integrals are
mpmath.quad (tanh-sinh) over the real line split at the components' locations, sums
are exact sums of mpmath terms.  Infinite variances are decided analytically from the
tail exponents (stated per case), never by integrating.  Every literal records its
method and the number of digits kept.

Run: python scripts/make_exact_references.py   (a few minutes)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import mpmath as mp
import sympy as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators import registry  # noqa: E402
from verify.core.expression import RATIO, as_expression  # noqa: E402

WORKING_DIGITS = 50
KEPT_DIGITS = 40
# A quadrature whose error estimate leaves fewer correct digits than this is a failure.
MIN_DIGITS = 20
ESTIMATORS = ("k1", "k2", "k3", "k4", "kl_pq", "verl_abs")  # verl_abs: Abs(log(r)), formerly "abs"

CAT_A = [0.0, 0.5, -1.0, 2.0, 0.3, -0.4, 1.1]
CAT_B = [0.1, 0.4, -0.8, 1.7, 0.35, -0.5, 1.3]
CAT_C = [round(1.5 * ((i * 37) % 11) / 11 - 0.75 + 0.1 * (i % 3), 6) for i in range(40)]
CAT_D = [round(v + 0.3 * ((i * 13) % 7) / 7 - 0.15, 6) for i, v in enumerate(CAT_C)]

# (p, q, {estimator: reason its variance is infinite})
_GROWS_LIKE_R = "f grows like r as r -> inf, so Var is infinite when E_q[r^2] = int p^2/q diverges"
CASES = [
    ("norm(0.012, 1)", "norm(0, 1)", {}),
    ("norm(0.3, 0.8)", "norm(-0.2, 1.1)", {}),
    ("norm(1.5, 0.6)", "norm(0, 1)", {}),
    ("norm(0, 2)", "norm(0, 1)", {e: _GROWS_LIKE_R + ": p^2/q ~ exp(-x^2/4 + x^2/2)" for e in ("k3", "kl_pq")}),
    ("laplace(0.2, 1.3)", "laplace(0, 1)", {}),
    ("laplace(0.5, 2.5)", "laplace(0, 1)", {e: _GROWS_LIKE_R + ": p^2/q ~ exp(-0.8|x| + |x|)" for e in ("k3", "kl_pq")}),
    ("t(4, 0.3, 1.2)", "t(6, 0, 1)", {}),
    ("t(2, 0, 1)", "t(5, 0, 1)", {e: _GROWS_LIKE_R + ": p^2/q ~ |x|^-6 / |x|^-6" for e in ("k3", "kl_pq")}),
    ("gamma(0.7, scale=1.5)", "gamma(0.9, scale=1.2)", {}),
    ("gamma(3, scale=0.5)", "gamma(2, scale=1)", {}),
    ("gamma(2.015, scale=1)", "gamma(2, scale=1)", {}),
    ("beta(0.6, 1.4)", "beta(0.8, 1.2)", {}),
    ("beta(3, 2)", "beta(2, 2.5)", {}),
    ("beta(2.02, 3)", "beta(2, 3)", {}),
    ("poisson(3.3)", "poisson(3)", {}),
    ("poisson(12)", "poisson(7.5)", {}),
    ("poisson(5.03)", "poisson(5)", {}),
    (f"categorical(logits={CAT_A})", f"categorical(logits={CAT_B})", {}),
    (f"categorical(logits={CAT_D})", f"categorical(logits={CAT_C})", {}),
    ("mixture(weights=[0.3, 0.7], components=[norm(-1, 0.7), norm(1.2, 1.1)])",
     "mixture(weights=[0.5, 0.5], components=[norm(-1, 1), norm(1, 1)])", {}),
    ("mixture(weights=[0.6, 0.4], components=[laplace(0, 1), t(3, 1, 2)])", "t(4, 0.5, 1.5)", {}),
]


# --- densities in mpmath (written out independently of verify.layers.exact) ---------------

def _call(spec):
    """Parse a spec with Python's own literal rules: the specs here are ours, not user input."""
    import ast

    tree = ast.parse(spec, mode="eval").body
    return _node(tree)


def _node(node):
    import ast

    if isinstance(node, ast.Call):
        args = [_node(a) for a in node.args]
        kwargs = {k.arg: _node(k.value) for k in node.keywords}
        return (node.func.id, args, kwargs)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_node(e) for e in node.elts]
    return ast.literal_eval(node)


def _params(name, args, kwargs):
    names = {"norm": ("loc", "scale"), "laplace": ("loc", "scale"), "t": ("df", "loc", "scale"),
             "gamma": ("a", "loc", "scale"), "beta": ("a", "b"), "poisson": ("mu",),
             "categorical": ("logits",), "mixture": ("weights", "components")}[name]
    defaults = {"loc": 0, "scale": 1}
    out = dict(defaults)
    out.update(dict(zip(names, args)))
    out.update(kwargs)
    return out


def _mp(value):
    return mp.mpf(repr(float(value))) if not isinstance(value, int) else mp.mpf(value)


def log_density(spec_tree):
    name, args, kwargs = spec_tree
    P = _params(name, args, kwargs)
    if name == "norm":
        loc, s = _mp(P["loc"]), _mp(P["scale"])
        return lambda x: -(x - loc) ** 2 / (2 * s * s) - mp.log(s) - mp.log(2 * mp.pi) / 2
    if name == "laplace":
        loc, s = _mp(P["loc"]), _mp(P["scale"])
        return lambda x: -abs(x - loc) / s - mp.log(2 * s)
    if name == "t":
        df, loc, s = _mp(P["df"]), _mp(P["loc"]), _mp(P["scale"])
        c = mp.loggamma((df + 1) / 2) - mp.loggamma(df / 2) - mp.log(df * mp.pi) / 2 - mp.log(s)
        return lambda x: c - (df + 1) / 2 * mp.log(1 + ((x - loc) / s) ** 2 / df)
    if name == "gamma":
        a, loc, s = _mp(P["a"]), _mp(P["loc"]), _mp(P["scale"])
        return lambda x: (a - 1) * mp.log((x - loc) / s) - (x - loc) / s - mp.loggamma(a) - mp.log(s)
    if name == "beta":
        a, b = _mp(P["a"]), _mp(P["b"])
        lb = mp.log(mp.beta(a, b))
        return lambda x: (a - 1) * mp.log(x) + (b - 1) * mp.log(1 - x) - lb
    if name == "poisson":
        mu = _mp(P["mu"])
        return lambda k: k * mp.log(mu) - mu - mp.loggamma(k + 1)
    if name == "mixture":
        parts = [log_density(c) for c in P["components"]]
        weights = [_mp(w) for w in P["weights"]]
        return lambda x: mp.log(mp.fsum(w * mp.exp(f(x)) for w, f in zip(weights, parts)))
    raise ValueError(name)


def locations(spec_tree):
    name, args, kwargs = spec_tree
    P = _params(name, args, kwargs)
    if name == "mixture":
        return [x for c in P["components"] for x in locations(c)]
    if name in ("norm", "laplace", "t"):
        return [P["loc"] + k * P["scale"] for k in (-3, -1, 0, 1, 3)]
    if name == "gamma":
        return [P["loc"] + P["scale"] * k for k in (0.5, 1, 2, 4, 8)]
    if name == "beta":
        return [0.05, 0.25, 0.5, 0.75, 0.95]
    return []


def support(spec_tree):
    name, args, kwargs = spec_tree
    P = _params(name, args, kwargs)
    if name == "mixture":
        return support(P["components"][0])
    if name == "gamma":
        return (_mp(P["loc"]), mp.inf)
    if name == "beta":
        return (mp.mpf(0), mp.mpf(1))
    return (-mp.inf, mp.inf)


# --- expectations ----------------------------------------------------------------

def expectation(p_tree, q_tree, g):
    """E_q[g(t)] with t = log p - log q; (value, method)."""
    name = q_tree[0]
    if name != "categorical":
        logp, logq = log_density(p_tree), log_density(q_tree)
    if name == "categorical":
        lp = _categorical_logs(p_tree)
        lq = _categorical_logs(q_tree)
        value = mp.fsum(mp.exp(b) * g(a - b) for a, b in zip(lp, lq))
        return value, f"exact sum over {len(lq)} categories in mpmath at {WORKING_DIGITS} digits"
    if name == "poisson":
        mu = max(_mp(p_tree[1][0]), _mp(q_tree[1][0]))
        count = int(mu + 60 * mp.sqrt(mu) + 300)
        value = mp.fsum(mp.exp(logq(k)) * g(logp(k) - logq(k)) for k in range(count + 1))
        return value, (f"exact sum k = 0..{count} in mpmath at {WORKING_DIGITS} digits "
                       f"(terms beyond are below 1e-100 relative)")
    lo, hi = support(q_tree)
    cuts = sorted({float(x) for x in locations(p_tree) + locations(q_tree) + kinks(p_tree, q_tree)
                   if lo < x < hi})
    points = [lo] + [_mp(x) for x in cuts] + [hi]
    integrand = lambda x: mp.exp(logq(x)) * g(logp(x) - logq(x))  # noqa: E731
    value, error = mp.quad(integrand, points, error=True, maxdegree=10)
    if error > mp.mpf(10) ** (-MIN_DIGITS) * abs(value):
        raise RuntimeError(f"mpmath.quad error estimate {error} too large for {value}")
    return value, (f"mpmath.quad (tanh-sinh) at {WORKING_DIGITS} digits over {len(points) - 1} pieces, "
                   f"error estimate {mp.nstr(error, 3)}")


def kinks(p_tree, q_tree):
    """Points where t = log p - log q changes sign (|log r| has a kink there)."""
    logp, logq = log_density(p_tree), log_density(q_tree)
    lo, hi = support(q_tree)
    places = locations(p_tree) + locations(q_tree)
    a = float(max(lo, min(places) - 20 * (max(places) - min(places) + 1))) if lo == -mp.inf else float(lo)
    b = float(min(hi, max(places) + 20 * (max(places) - min(places) + 1)))
    if lo != -mp.inf:
        a = a + 1e-9
    if hi != mp.inf:
        b = b - 1e-9
    grid = [a + (b - a) * i / 400 for i in range(401)]
    values = [logp(_mp(x)) - logq(_mp(x)) for x in grid]
    roots = []
    for x0, x1, v0, v1 in zip(grid, grid[1:], values, values[1:]):
        if v0 == 0:
            roots.append(x0)
        elif v0 * v1 < 0:
            root = mp.findroot(lambda x: logp(x) - logq(x), (_mp(x0), _mp(x1)), solver="bisect")
            roots.append(float(root))
    return roots


def _categorical_logits(tree):
    P = _params(*tree)
    return [_mp(v) for v in P["logits"]]


def _categorical_logs(tree):
    logits = _categorical_logits(tree)
    normalizer = mp.log(mp.fsum(mp.exp(v) for v in logits))
    return [v - normalizer for v in logits]


def literal(value, method):
    """A reference value with the digits its error estimate supports (at most KEPT_DIGITS)."""
    digits = KEPT_DIGITS
    if "error estimate" in method:
        error = mp.mpf(method.rsplit("error estimate ", 1)[1])
        if error > 0 and value != 0:
            digits = int(min(KEPT_DIGITS, mp.floor(-mp.log10(error / abs(value)))))
    return {"value": mp.nstr(value, digits, min_fixed=-mp.inf, max_fixed=mp.inf),
            "method": method, "digits": digits}


def main():
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        cases = pool.map(_case, CASES)
    out = {
        "about": ("Exact moments of KL estimators under x ~ q, r = p/q, made by "
                  "scripts/make_exact_references.py with mpmath (independent of verify.layers.exact)."),
        "working_digits": WORKING_DIGITS,
        "cases": cases,
    }
    path = ROOT / "tests" / "data" / "exact_references.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def _functions():
    known = registry()
    functions = {}
    for name in ESTIMATORS:
        expr = as_expression(known[name].expr)
        f_r = sp.lambdify(RATIO, expr, modules="mpmath")
        functions[name] = (str(expr), (lambda f_r: lambda t: f_r(mp.exp(t)))(f_r))
    return functions


def _case(spec):
    mp.mp.dps = WORKING_DIGITS
    functions = _functions()
    p_spec, q_spec, infinite = spec
    if True:
        p_tree, q_tree = _call(p_spec), _call(q_spec)
        print(f"{p_spec}  vs  {q_spec}", file=sys.stderr)
        kl_qp, method_qp = expectation(p_tree, q_tree, lambda t: -t)
        kl_pq, method_pq = expectation(p_tree, q_tree, lambda t: mp.exp(t) * t)
        case = {"p": p_spec, "q": q_spec,
                "kl_qp": literal(kl_qp, "E_q[-log r] by " + method_qp),
                "kl_pq": literal(kl_pq, "E_q[r log r] by " + method_pq),
                "estimators": {}}
        for name, (expression, f) in functions.items():
            mean, method = expectation(p_tree, q_tree, f)
            entry = {"expression": expression, "mean": literal(mean, method)}
            if name in infinite:
                entry["variance"] = {"value": "inf", "method": "analytic: " + infinite[name], "digits": None}
            else:
                variance, vmethod = expectation(p_tree, q_tree, lambda t: (f(t) - mean) ** 2)
                entry["variance"] = literal(variance, vmethod)
            case["estimators"][name] = entry
    return case


if __name__ == "__main__":
    main()
