"""E_q[g(t)] for t = log p - log q: adaptive Gauss-Legendre on a mapped line, exact sums.

Continuous supports are mapped to u on the whole line (x = c + w sinh u on the real
line, x = base + s e^u on a half-line, x = logistic(u) on (0, 1)), so every tail of
every family becomes at worst an exponential in u, and endpoint singularities of
gamma and beta densities become smooth exponential tails.  The integrand is formed
in log space: exp(log q + log J + e) * m with f = m e^e.

Tails: whether a tail converges is decided by verify.layers.exact.tails from the families'
tail exponents and the estimator's growth (not from the integrand's slope).  A
convergent tail is truncated where log|integrand| has fallen ``TAIL_DROP`` nats below
its peak beyond every breakpoint, the rest bounded by exp(h) / slope times a safety
factor; where float64 cannot get there (uncertain log-densities, slow power-law decay)
the rest is integrated in mpmath (verify.layers.exact.highprec).  Only an estimator whose growth
the analysis cannot follow falls back on the slopes along a ladder of probes.

Error: |G21 - G10| per interval (the 21-point rule is far more accurate than the
10-point rule it is compared with), plus the propagated rounding bound of every node
value, plus the tail bounds.

The pieces: verify.layers.exact.integrand (the mapped line and the integrand),
verify.layers.exact.quadrature (continuous supports), verify.layers.exact.sums
(categorical and Poisson), verify.layers.exact.integral (the result and ExactError).
"""
from __future__ import annotations

from verify.layers.exact.evaluate import Node
from verify.layers.exact.families import Family
from verify.layers.exact.integral import ExactError, Integral
from verify.layers.exact.quadrature import continuous_expectation
from verify.layers.exact.sums import categorical_expectation, poisson_expectation

__all__ = ["Integral", "ExactError", "expectation"]


def expectation(p: Family, q: Family, node: Node) -> Integral:
    """E_q[f] for the f that ``node`` evaluates from t = log p - log q."""
    if q.name == "categorical":
        return categorical_expectation(p, q, node)
    if q.name == "poisson":
        return poisson_expectation(p, q, node)
    return continuous_expectation(p, q, node)
