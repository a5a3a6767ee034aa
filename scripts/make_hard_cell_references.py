"""Write tests/data/hard_cell_references.json: mpmath references for the hard cells of the exact layer
(different supports, heavy tails, -inf logits, values beyond float64).

Independent of verify.layers.exact: densities are the ones written out in
scripts/make_exact_references.py (mpmath), estimators are written out here in t = log r,
integrals are mpmath.quad (tanh-sinh) split at the components' locations, with the
tails of heavy-tailed integrands in v = log|x| (where they decay exponentially), and
sums are exact sums of mpmath terms.  Infinite values are decided analytically (the
reason is stated per cell).  Every literal records its method and digits.

Run: python scripts/make_hard_cell_references.py   (about a minute)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import mpmath as mp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_exact_references import _call, log_density  # noqa: E402

WORKING_DIGITS = 45
KEPT_DIGITS = 30

F = {
    "k1": lambda t: -t,
    "k3": lambda t: mp.expm1(t) - t,
    "k4": lambda t: _k4(t),
}


# exp(y) for y below -NEGLIGIBLE is 0 at any working precision times any factor here
# (mpmath would spend minutes reducing an argument with thousands of digits)
NEGLIGIBLE = 10 ** 7


def _exp(y):
    return mp.mpf(0) if y < -NEGLIGIBLE else mp.exp(y)


def _k4(t):
    """log((r - 1)^2 + 1); for t > 1000, 2 t + log1p(-2 e^-t + 2 e^-2t) (no exp of a huge t)."""
    if t > 1000:
        return 2 * t + mp.log1p(-2 * mp.exp(-t) + 2 * mp.exp(-2 * t))
    if t < -1000:
        return mp.log(2)  # log(2 - 2 e^t + e^2t), e^t below 1e-434
    return mp.log1p(mp.expm1(t) ** 2)
KL_QP = lambda t: -t  # noqa: E731
KL_PQ = "p log(p/q)"  # integrated as p (log p - log q): no exp of a huge t

# The 152,064-token pair: logits uniform in (-650, 0), numpy default_rng(VOCAB_SEED);
# tests/test_exact.py draws the same arrays.
VOCAB_SEED = 9
VOCAB = 152_064
BIG_VOCAB = 100_000


GAMMA_REASON = ("at infinity p ~ y^-0.7 e^(-y/2), q ~ y^-0.5 e^-y, so k3^2 ~ r^2 and "
                "q r^2 = p^2/q ~ y^-0.9, not integrable")


def vocabulary_pair():
    rng = np.random.default_rng(VOCAB_SEED)
    return rng.uniform(-650, 0, VOCAB), rng.uniform(-650, 0, VOCAB)


def big_vocabulary_pair():
    """q puts e^-700 / 1e5 on token 0, which p puts almost all its mass on: Var ~ 1e309."""
    p = np.full(BIG_VOCAB, -700.0)
    p[0] = 0.0
    q = np.zeros(BIG_VOCAB)
    q[0] = -700.0
    return p, q


def _logs(logits):
    logits = [mp.mpf(repr(float(v))) for v in logits]
    finite = [v for v in logits if v != mp.ninf]
    top = max(finite)
    normalizer = top + mp.log(mp.fsum(mp.exp(v - top) for v in finite))
    return [v - normalizer if v != mp.ninf else mp.ninf for v in logits]


def categorical(p_logits, q_logits, g, with_outside=None):
    """sum over q > 0 of q g(t); p = 0 there contributes q g(-inf) = with_outside."""
    lp, lq = _logs(p_logits), _logs(q_logits)
    terms = []
    for a, b in zip(lp, lq):
        if b == mp.ninf:
            continue
        if a == mp.ninf:
            terms.append(mp.exp(b) * with_outside)
            continue
        terms.append(mp.exp(a) * (a - b) if g is KL_PQ else mp.exp(b) * g(a - b))
    return mp.fsum(terms)


def poisson(mu_p, mu_q, g, count):
    mu_p, mu_q = mp.mpf(mu_p), mp.mpf(mu_q)
    total = []
    for k in range(count + 1):
        lp = k * mp.log(mu_p) - mu_p - mp.loggamma(k + 1)
        lq = k * mp.log(mu_q) - mu_q - mp.loggamma(k + 1)
        total.append(mp.exp(lp) * (lp - lq) if g is KL_PQ else mp.exp(lq) * g(lp - lq))
    return mp.fsum(total)


def continuous(p_spec, q_spec, g, cuts, lo=-mp.inf, hi=mp.inf, log_tails=None):
    """int q g(log p - log q) over (lo, hi), split at cuts; with log_tails = (a, b), the
    parts beyond |x| = e^a run in v = log|x| (x = +-e^v) up to v = b and beyond."""
    logp, logq = log_density(_call(p_spec)), log_density(_call(q_spec))

    def h(x):
        lq = logq(x)
        if g is KL_PQ:
            lp = logp(x)
            return _exp(lp) * (lp - lq)
        if g is F["k3"]:
            # q k3(r) = p - q (1 + log r): no exp of a huge log r
            lp = logp(x)
            return _exp(lp) - _exp(lq) * (1 + lp - lq)
        if lq < -NEGLIGIBLE:
            return mp.mpf(0)
        return _exp(lq) * g(logp(x) - lq)

    if log_tails is None:
        points = [lo] + [mp.mpf(c) for c in cuts] + [hi]
        return mp.quad(h, points, maxdegree=10)
    a, b = log_tails
    edge = mp.exp(a)
    middle = mp.quad(h, [-edge] + [mp.mpf(c) for c in cuts if -edge < c < edge] + [edge], maxdegree=10)
    vs = [mp.mpf(a)] + [mp.mpf(v) for v in (4, 8, 16, 32, 64, 128, 256, 512) if a < v < b] + [mp.mpf(b), mp.inf]
    right = mp.quad(lambda v: h(mp.exp(v)) * mp.exp(v), vs, maxdegree=10)
    left = mp.quad(lambda v: h(-mp.exp(v)) * mp.exp(v), vs, maxdegree=10)
    return middle + right + left


def lit(value, method, digits=KEPT_DIGITS):
    return {"value": mp.nstr(value, digits, min_fixed=-mp.inf, max_fixed=mp.inf), "digits": digits, "method": method}


def infinite(reason):
    return {"value": "inf", "digits": None, "method": "analytic: " + reason}


def main():
    mp.mp.dps = WORKING_DIGITS
    cells = []
    print("item 1", file=sys.stderr)

    # 1. k3 on discrete pairs with a large log r
    p2, q2 = [0, -700], [-700, 0]
    how = f"exact sum of the terms in mpmath at {WORKING_DIGITS} digits"
    cell = {"item": 1, "p": "categorical(logits=[0, -700])", "q": "categorical(logits=[-700, 0])",
            "kl_qp": lit(categorical(p2, q2, KL_QP), how), "kl_pq": lit(categorical(p2, q2, KL_PQ), how),
            "mean": {n: lit(categorical(p2, q2, f), how) for n, f in F.items()}}
    m3 = categorical(p2, q2, F["k3"])
    cell["variance"] = {"k3": lit(categorical(p2, q2, lambda t: (F["k3"](t) - m3) ** 2), how)}
    cells.append(cell)
    count = 4000
    how_p = f"exact sum k = 0..{count} in mpmath at {WORKING_DIGITS} digits (the terms beyond are below 1e-1000)"
    cells.append({"item": 1, "p": "poisson(0.01)", "q": "poisson(500)",
                  "kl_qp": lit(poisson(0.01, 500, KL_QP, count), how_p),
                  "mean": {"k3": lit(poisson(0.01, 500, F["k3"], count), how_p),
                           "k1": lit(poisson(0.01, 500, F["k1"], count), how_p)}})
    lp, lq = vocabulary_pair()
    cells.append({"item": 1, "p": "VOCABULARY_P", "q": "VOCABULARY_Q",
                  "about": f"{VOCAB} tokens, logits uniform in (-650, 0), numpy default_rng({VOCAB_SEED}): p then q",
                  "kl_qp": lit(categorical(lp, lq, KL_QP), how),
                  "mean": {n: lit(categorical(lp, lq, f), how) for n, f in F.items()}})

    print('item 2', file=sys.stderr)
    # 2. a far, narrow mixture component
    mix = "mixture(weights=[0.5, 0.5], components=[norm(0, 1), norm(30, 0.01)])"
    cuts = [-8, -3, -1, 0, 1, 3, 8, 29.5, 29.9, 29.95, 29.98, 29.99, 30, 30.01, 30.02, 30.05, 30.1, 30.5]
    how_c = f"mpmath.quad (tanh-sinh) at {WORKING_DIGITS} digits, split at the components' locations"
    m3 = continuous(mix, "norm(0, 1)", F["k3"], cuts)
    cells.append({"item": 2, "p": mix, "q": "norm(0, 1)",
                  "kl_qp": lit(continuous(mix, "norm(0, 1)", KL_QP, cuts), how_c),
                  "kl_pq": lit(continuous(mix, "norm(0, 1)", KL_PQ, cuts), how_c),
                  "mean": {"k3": lit(m3, how_c)},
                  "variance": {"k3": lit(continuous(mix, "norm(0, 1)", lambda t: (F["k3"](t) - m3) ** 2, cuts),
                                         how_c, digits=20)}})

    print('item 3', file=sys.stderr)
    # 3. KL(p||q) for a heavy-tailed p against a light-tailed q
    how_t = how_c + "; beyond |x| = e^2 in v = log|x|"
    for df in ("3", "2.5"):
        p = f"t({df}, 0, 1)"
        cells.append({"item": 3, "p": p, "q": "norm(0, 1)",
                      "kl_pq": lit(continuous(p, "norm(0, 1)", KL_PQ, [-1, 0, 1], log_tails=(2, 1000)), how_t),
                      "kl_qp": lit(continuous(p, "norm(0, 1)", KL_QP, [-3, -1, 0, 1, 3]), how_c)})

    print('item 4', file=sys.stderr)
    # 4. Var[k3] for norm against laplace
    cuts4 = [-10, -3, -1, 0, 1, 3, 10]
    m3 = continuous("norm(0, 1)", "laplace(0, 1)", F["k3"], cuts4)
    cells.append({"item": 4, "p": "norm(0, 1)", "q": "laplace(0, 1)", "mean": {"k3": lit(m3, how_c)},
                  "variance": {"k3": lit(continuous("norm(0, 1)", "laplace(0, 1)",
                                                     lambda t: (F["k3"](t) - m3) ** 2, cuts4), how_c)}})

    print('item 5', file=sys.stderr)
    # 5. finite near the threshold: q r^2 ~ |x|^-1.0005
    p5, q5 = "t(1.5, 0, 1)", "t(2.9995, 0, 1)"
    m3 = continuous(p5, q5, F["k3"], [-10, -1, 0, 1, 10], log_tails=(3, 10 ** 6))
    how5 = how_c + "; beyond |x| = e^3 in v = log|x| (the integrand ~ e^(-0.0005 v)), split out to v = 1e6"
    cells.append({"item": 5, "p": p5, "q": q5, "mean": {"k3": lit(m3, how5)},
                  "variance": {"k3": lit(_threshold_variance(p5, q5, m3), how5, digits=20)}})

    print('item 6', file=sys.stderr)
    # 6. partial answers and values beyond float64
    cells.append({"item": 6, "p": "t(2, 0, 1)", "q": "norm(0, 1)",
                  "kl_pq": infinite("p log(p/q) ~ |x|^-3 x^2 / 2 = |x|^-1 / 2 is not integrable"),
                  "kl_qp": lit(continuous("t(2, 0, 1)", "norm(0, 1)", KL_QP, [-3, -1, 0, 1, 3]), how_c),
                  "mean": {"k3": lit(continuous("t(2, 0, 1)", "norm(0, 1)", F["k3"], [-3, -1, 0, 1, 3]), how_c)}})
    cells.append({"item": 6, "p": "gamma(0.3, scale=2)", "q": "gamma(0.5)",
                  "mean": {"k3": lit(continuous("gamma(0.3, scale=2)", "gamma(0.5)", F["k3"],
                                                [0.01, 0.1, 0.5, 1, 2, 5, 10], lo=0), how_c)},
                  "variance": {"k3": infinite(GAMMA_REASON)}})
    mu_p, mu_q = mp.mpf(500), mp.mpf("0.01")
    log_second = mu_p ** 2 / mu_q - 2 * mu_p + mu_q  # log E_q[r^2], exactly
    cells.append({"item": 6, "p": "poisson(500)", "q": "poisson(0.01)",
                  "log10_variance": {"k3": lit(log_second / mp.log(10), "log10 E_q[r^2] = (mu_p^2/mu_q - 2 mu_p "
                                                                   "+ mu_q) / ln 10 exactly; Var[k3] = E_q[r^2] "
                                                                   "(1 - 10^-10856900) here", digits=20)}})
    bp, bq = big_vocabulary_pair()
    mean3 = categorical(bp, bq, F["k3"])
    var3 = categorical(bp, bq, lambda t: (F["k3"](t) - mean3) ** 2)
    cells.append({"item": 6, "p": "BIG_P", "q": "BIG_Q",
                  "about": f"{BIG_VOCAB} tokens: p logits [0, -700, ..., -700], q logits [-700, 0, ..., 0]",
                  "mean": {"k3": lit(mean3, how)}, "log10_variance": {"k3": lit(mp.log10(var3), how, digits=20)}})

    print('item 7', file=sys.stderr)
    # 7. different supports and -inf logits
    how_g = how_c + " over (0, inf)"
    cells.append({"item": 7, "p": "gamma(2)", "q": "norm(0, 1)",
                  "kl_qp": infinite("q has mass 1/2 on x < 0 where p = 0"),
                  "mean": {"k3": infinite("k3 = +inf at r = 0, where q has mass 1/2"),
                           "k4": lit(continuous("gamma(2)", "norm(0, 1)", F["k4"], [0.5, 1, 2, 4, 8], lo=0)
                                     + mp.log(2) / 2, how_g + ", plus q(x < 0) log 2 (k4(0) = log 2)")},
                  "kl_pq": lit(continuous("gamma(2)", "norm(0, 1)", KL_PQ, [0.5, 1, 2, 4, 8], lo=0), how_g)})
    kl = continuous("norm(0, 1)", "gamma(2)", KL_QP, [0.5, 1, 2, 4, 8], lo=0)
    cells.append({"item": 7, "p": "norm(0, 1)", "q": "gamma(2)",
                  "kl_qp": lit(kl, how_g), "kl_pq": infinite("p has mass 1/2 on x < 0 where q = 0"),
                  "p_mass_outside_q": lit(mp.mpf(1) / 2, "exact"),
                  "mean": {"k3": lit(continuous("norm(0, 1)", "gamma(2)", F["k3"], [0.5, 1, 2, 4, 8], lo=0), how_g),
                           "k1": lit(kl, how_g)}})
    topk_p, topk_q = [2, 1, 0, -1, 0.5], [2, 1, -mp.inf, -mp.inf, 0.5]
    lp_all = _logs(topk_p)
    cells.append({"item": 7, "p": "categorical(logits=[2, 1, 0, -1, 0.5])",
                  "q": "categorical(logits=[2, 1, -inf, -inf, 0.5])",
                  "about": "top-3 sampling: q is p restricted to its 3 most likely tokens",
                  "kl_qp": lit(categorical(topk_p, topk_q, KL_QP), how),
                  "kl_pq": infinite("p has mass on tokens q never samples"),
                  "p_mass_outside_q": lit(mp.exp(lp_all[2]) + mp.exp(lp_all[3]), how),
                  "mean": {n: lit(categorical(topk_p, topk_q, f), how) for n, f in F.items()}})
    out = {"about": "References for the hard cells of the exact layer, made by scripts/make_hard_cell_references.py (mpmath, "
                    "independent of verify.layers.exact).", "working_digits": WORKING_DIGITS, "cells": cells}
    path = ROOT / "tests" / "data" / "hard_cell_references.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def _threshold_variance(p_spec, q_spec, mean):
    """Var[k3] for the t pair: the tail beyond |x| = e^3 in w = 0.0005 v."""
    logp, logq = log_density(_call(p_spec)), log_density(_call(q_spec))

    def h(x):
        lq = logq(x)
        return mp.exp(lq) * (F["k3"](logp(x) - lq) - mean) ** 2

    middle = mp.quad(h, [-mp.e ** 3, -10, -1, 0, 1, 10, mp.e ** 3], maxdegree=10)
    eps = mp.mpf("0.0005")
    tail = mp.quad(lambda w: h(mp.exp(w / eps)) * mp.exp(w / eps) / eps,
                   [3 * eps, mp.mpf("0.01"), mp.mpf("0.1"), 1, 4, 16, 64, 200, mp.inf], maxdegree=10)
    return middle + 2 * tail  # symmetric


if __name__ == "__main__":
    main()
