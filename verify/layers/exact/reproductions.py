"""The two published Monte Carlo tables, exactly and by their own Monte Carlo method.

Schulman 2020: q = N(0, 1), p = N(0.1, 1) and p = N(1, 1); k1, k2, k3.
Seed 000_35babbbff54373df.txt: p = N(0.5, 1.2), q = N(1.3, 2.5); k1..k4; its "true" KL
was torch's kl_divergence(p, q) = KL(p||q) although x ~ q, so its biases are against
KL(p||q).  Both directions are given here for every cell.

Monte Carlo: numpy, ``numpy.random.default_rng(seed)``, x ~ q, the estimators' own
numeric implementations on (log p(x), log q(x)); std with ddof=1 as torch's default.
The default sample count is 10^6 (the benchmark uses 10^7, as the seeds did).
"""
from __future__ import annotations

import math

import numpy as np

from estimators import registry
from verify.core.expression import as_expression
from verify.layers.exact.families import parse_family
from verify.layers.exact.moments import moments

__all__ = ["reproductions", "TABLES", "monte_carlo_cell", "DEFAULT_SAMPLES", "SEED"]

DEFAULT_SAMPLES = 10 ** 6
SEED = 20240601
CHUNK = 10 ** 6

# Published figures (relative bias, std / KL), copied from the sources.
TABLES = {
    "schulman_2020": {
        "source": "J. Schulman, 'Approximating KL Divergence' (2020), tables for true KL 0.005 and 0.5",
        "q": "norm(0, 1)",
        "cells": [
            {"p": "norm(0.1, 1)", "published": {"k1": (0.0, 20.0), "k2": (0.002, 1.42), "k3": (0.0, 1.42)}},
            {"p": "norm(1, 1)", "published": {"k1": (0.0, 2.0), "k2": (0.25, 1.73), "k3": (0.0, 1.7)}},
        ],
        "published_against": "kl_qp",
    },
    "seed_000": {
        "source": "seed 000_35babbbff54373df.txt (Zhang 2025), torch, 10^7 samples from q",
        "q": "norm(1.3, 2.5)",
        "cells": [
            {"p": "norm(0.5, 1.2)", "published": {"k1": (1.893368, 6.842822), "k2": (10.049346, 40.413708),
                                                  "k3": (1.892912, 5.611935), "k4": (0.164644, 0.717409)}},
        ],
        "published_against": "kl_pq",
    },
}


def _normal_logpdf(x, loc, scale):
    z = (x - loc) / scale
    return -0.5 * z * z - math.log(scale) - 0.5 * math.log(2 * math.pi)


def monte_carlo_cell(estimator, p_loc, p_scale, q_loc, q_scale, samples, seed=SEED):
    """(mean, std) of the estimator's numeric implementation over ``samples`` draws of q."""
    rng = np.random.default_rng(seed)
    total, total_sq, count = 0.0, 0.0, 0
    shift = None
    for start in range(0, samples, CHUNK):
        n = min(CHUNK, samples - start)
        x = rng.normal(q_loc, q_scale, n)
        values = np.asarray(estimator.numeric(_normal_logpdf(x, p_loc, p_scale), _normal_logpdf(x, q_loc, q_scale)),
                            dtype=np.float64)
        if shift is None:
            shift = float(values[0])  # shifted sums keep the variance accurate
        d = values - shift
        total += float(np.sum(d))
        total_sq += float(np.sum(d * d))
        count += n
    mean = shift + total / count
    variance = (total_sq - total * total / count) / (count - 1)
    return mean, math.sqrt(max(variance, 0.0))


def _params(spec):
    family = parse_family(spec)
    return family.params["loc"], family.params["scale"]


def reproductions(samples: int = DEFAULT_SAMPLES, seed: int = SEED) -> dict:
    """Every cell of both tables: exact moments, our Monte Carlo, and the published figures."""
    known = registry()
    out = {"samples": samples, "seed": seed, "tables": {}}
    for table_name, table in TABLES.items():
        q_loc, q_scale = _params(table["q"])
        rows = []
        for cell in table["cells"]:
            p_loc, p_scale = _params(cell["p"])
            p, q = parse_family(cell["p"]), parse_family(table["q"])
            for name, (pub_bias, pub_std) in cell["published"].items():
                estimator = known[name]
                exact = moments(as_expression(estimator.expr), p, q)
                mc_mean, mc_std = monte_carlo_cell(estimator, p_loc, p_scale, q_loc, q_scale, samples, seed)
                std = math.sqrt(exact.variance)
                row = {
                    "p": p.spec, "q": q.spec, "estimator": name,
                    "kl_qp": exact.kl_qp, "kl_pq": exact.kl_pq,
                    "exact": {"mean": exact.mean, "mean_abs_error": exact.mean_abs_error,
                              "std": std,
                              "relative_bias_qp": exact.relative_bias_qp, "relative_bias_pq": exact.relative_bias_pq,
                              "std_over_kl_qp": std / exact.kl_qp, "std_over_kl_pq": std / exact.kl_pq},
                    "monte_carlo": {"mean": mc_mean, "std": mc_std,
                                    "relative_bias_qp": (mc_mean - exact.kl_qp) / exact.kl_qp,
                                    "relative_bias_pq": (mc_mean - exact.kl_pq) / exact.kl_pq,
                                    "std_over_kl_qp": mc_std / exact.kl_qp, "std_over_kl_pq": mc_std / exact.kl_pq},
                    "published": {"relative_bias": pub_bias, "std_over_kl": pub_std,
                                  "against": table["published_against"]},
                }
                rows.append(row)
        out["tables"][table_name] = {"source": table["source"], "published_against": table["published_against"],
                                     "rows": rows}
    return out
