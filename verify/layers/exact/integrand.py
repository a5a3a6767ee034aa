"""A continuous support mapped onto the whole line u, and the integrand q J f on it.

x = c + w sinh u on the real line, x = base + s e^u on a half-line, x = logistic(u) on
(0, 1): every tail becomes at worst an exponential in u, and the endpoint singularities
of gamma and beta densities become smooth exponential tails.  The integrand is formed in
log space, exp(log q + log J + e) * m with f = m e^e, next to a bound on its error.
"""
from __future__ import annotations

import math

import numpy as np

from verify.core.dtypes import EPS
from verify.layers.exact.evaluate import evaluate
from verify.layers.exact.families import Family, Point, common_support

__all__ = ["SupportMapping", "Integrand"]


# Breakpoints at a component's location plus and minus these multiples of its scale: a
# narrow component far from q's centre is a sliver in u, which an interval's nodes
# would step over; its mass is where these breakpoints are.
_BREAKPOINT_SCALES = (0.5, 1, 2, 4, 8, 16, 40)


class SupportMapping:
    """x(u) of a continuous support onto the whole line u, and its breakpoints in u."""

    def __init__(self, p: Family, q: Family):
        self.support = common_support(p, q)
        places = p.locations() + q.locations()
        self.width = min(s for _, s in places)
        if self.support == "real":
            q_places = q.locations()
            if q.name == "mixture":
                heaviest = int(np.argmax([w for w in q.weights]))
                q_places = q.components[heaviest].locations()
            self.center = q_places[0][0]
        elif self.support.startswith("halfline"):
            self.base = float(self.support[len("halfline("):-1])
        self.breaks = sorted({round(self.to_u(x), 12) for loc, s in places
                              for x in [loc] + [loc + sign * k * s for sign in (-1, 1) for k in _BREAKPOINT_SCALES]
                              if self.inside(x)})

    def inside(self, x):
        if self.support == "real":
            return True
        if self.support == "unit":
            return 0 < x < 1
        return x > self.base

    def to_u(self, x):
        if self.support == "real":
            return math.asinh((x - self.center) / self.width)
        if self.support == "unit":
            return math.log(x) - math.log1p(-x)
        return math.log((x - self.base) / self.width)

    def point_mp(self, u):
        """(x, log Jacobian dx/du) in mpmath at the current precision."""
        import mpmath as mp

        if self.support == "real":
            x = mp.mpf(self.center) + mp.mpf(self.width) * mp.sinh(u)
            return x, mp.log(mp.mpf(self.width) * mp.cosh(u))
        if self.support == "unit":
            x = 1 / (1 + mp.exp(-u))
            return x, mp.log(x) + mp.log1p(-x)
        log_y = mp.log(mp.mpf(self.width)) + u
        return mp.mpf(self.base) + mp.exp(log_y), log_y

    def point(self, u):
        """(Point, log Jacobian dx/du, its error bound)."""
        with np.errstate(over="ignore"):
            if self.support == "real":
                x = self.center + self.width * np.sinh(u)
                au = np.abs(u)
                log_j = math.log(self.width) + au + np.log1p(np.exp(-2 * au)) - math.log(2)
                return Point(x=x, u=u), log_j, 4 * EPS * (np.abs(log_j) + au + 1)
            if self.support == "unit":
                log_x = -np.logaddexp(0.0, -u)
                log_1mx = -np.logaddexp(0.0, u)
                log_j = log_x + log_1mx
                return (Point(x=np.exp(log_x), log_x=log_x, log_1mx=log_1mx, u=u), log_j,
                        4 * EPS * (np.abs(log_x) + np.abs(log_1mx) + 1))
            log_y = math.log(self.width) + u
            y = np.exp(log_y)
            return Point(x=self.base + y, y=y, log_y=log_y, u=u, base=self.base), log_y, 4 * EPS * (np.abs(log_y) + 1)


def _normal_log_ratio(p, q, x):
    """(t, error bound) for two normals, t = -(zp - zq)(zp + zq)/2 - log(sp/sq) with
    zp - zq formed from the parameters (no cancellation when p is near q); else None."""
    if p.name != "norm" or q.name != "norm":
        return None
    loc_p, scale_p = p.params["loc"], p.params["scale"]
    loc_q, scale_q = q.params["loc"], q.params["scale"]
    inv = 1.0 / (scale_p * scale_q)
    slope = (scale_q - scale_p) * inv
    offset = (loc_q * scale_p - loc_p * scale_q) * inv
    zp, zq = (x - loc_p) / scale_p, (x - loc_q) / scale_q
    d = x * slope + offset
    s = zp + zq
    log_ratio = math.log(scale_p) - math.log(scale_q)
    t = -0.5 * d * s - log_ratio
    d_err = 8 * EPS * (np.abs(x) * abs(slope) + abs(loc_q * scale_p * inv) + abs(loc_p * scale_q * inv))
    s_err = 4 * EPS * (np.abs(zp) + np.abs(zq))
    # the node x itself is off by up to 2 eps |x| (its mapping): dt/dx = -(zp/sp - zq/sq)
    x_err = 2 * EPS * np.abs(x) * np.abs(zp / scale_p - zq / scale_q)
    t_err = (0.5 * (np.abs(d) * s_err + np.abs(s) * d_err + d_err * s_err) + 4 * EPS * (np.abs(0.5 * d * s) + abs(log_ratio))
             + x_err)
    return t, t_err


class Integrand:
    """q J f at nodes u, with error bounds; the last call's log-bounds stay on it for the tail ladder."""

    def __init__(self, p, q, node, mapping):
        self.p, self.q, self.node, self.mapping = p, q, node, mapping

    def __call__(self, u):
        """(g, bound on |error of g|, log|g|) at nodes u."""
        point, log_j, log_j_err = self.mapping.point(u)
        logp, logp_err = self.p.logpdf(point)
        logq, logq_err = self.q.logpdf(point)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            t = logp - logq
            t_err = logp_err + logq_err + EPS * np.abs(t)
            direct = _normal_log_ratio(self.p, self.q, point.x)
            if direct is not None:
                # the same t without subtracting two large log-densities: a near pair keeps its digits
                t, t_err = np.where(direct[1] < t_err, direct[0], t), np.minimum(direct[1], t_err)
            m, e, err = evaluate(self.node, t, t_err)
            log_weight = logq + log_j + e
            weight = np.exp(log_weight)
            g = m * weight
            w_err = logq_err + log_j_err + 2 * EPS * (np.abs(logq) + np.abs(log_j) + np.abs(e))
            g_err = weight * (err + np.abs(m) * np.expm1(np.minimum(w_err, 700.0)))
            log_abs = log_weight + np.log(np.abs(m))
            total_err = err + np.abs(m) * np.expm1(np.minimum(w_err, 700.0))
            self.last_upper = log_weight + np.log(np.abs(m) + total_err)
            self.last_lower = np.where(np.abs(m) > total_err, log_weight + np.log(np.abs(m) - total_err), -np.inf)
            self.last_m = m
            self.last_density_err = w_err + t_err
        return g, g_err, log_abs, m
