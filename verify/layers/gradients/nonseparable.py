"""Library coefficients that are not a function of t alone, nor exp(u) times one (slime's
weight inside the clamp, off-policy): exact sums at two precisions (softmax), mpmath.quad at
two precisions (normal), the bound being their difference plus QUAD_SAFETY times mpmath's
estimate."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import sympy as sp
from scipy.optimize import brentq
from sympy.core.relational import Relational

from verify.layers.gradients.bounds import DPS_HIGH, DPS_LOW, EXACT_SUM_FLOOR, QUAD_SAFETY, ROUNDING_REL
from verify.layers.gradients.softmax import softmax_log
from verify.layers.gradients.symbols import LOG_RATIO, LOG_WEIGHT

# mpmath.quad of the non-separable off-policy integrands (a weight inside a clamp):
# two precisions, the difference plus QUAD_SAFETY times mpmath's estimate is the bound.
GENERAL_DPS = (20, 30)
GENERAL_GRID = 8001  # x-grid on which the switches of the clamps are bracketed


def _general_softmax_at(function, pair, dps):
    with mpmath.workdps(dps):
        logq = softmax_log([mpmath.mpf(v) for v in pair.theta])
        logp = softmax_log([mpmath.mpf(v) for v in pair.p])
        logs = softmax_log([mpmath.mpf(v) for v in pair.theta_old])
        q = [mpmath.exp(v) for v in logq]
        terms = [mpmath.exp(c) * mpmath.mpf(function(b - a, a - c)) for a, b, c in zip(logq, logp, logs)]
        total = mpmath.fsum(terms)
        return [terms[i] - q[i] * total for i in range(len(q))], mpmath.fsum(abs(v) for v in terms) * 2


def _general_normal_at(function, switches, pair, dps):
    (m, s), (mp_, sp_), (mo, so) = pair.theta, pair.p, pair.theta_old
    with mpmath.workdps(dps):
        def log_density(x, loc, log_scale):
            return -((x - loc) / mpmath.exp(log_scale)) ** 2 / 2 - log_scale - mpmath.log(2 * mpmath.pi) / 2

        def integrand(x, component):
            log_q, log_p, log_old = log_density(x, m, s), log_density(x, mp_, sp_), log_density(x, mo, so)
            z = (x - m) / mpmath.exp(s)
            score = z / mpmath.exp(s) if component == 0 else z * z - 1
            return mpmath.exp(log_old) * mpmath.mpf(function(log_p - log_q, log_q - log_old)) * score

        points = [-mpmath.inf] + [mpmath.mpf(x) for x in switches] + [mpmath.inf]
        values, errors = [], []
        for component in (0, 1):
            value, error = mpmath.quad(lambda x: integrand(x, component), points, error=True)
            values.append(value)
            errors.append(error)
        return np.array([float(v) for v in values]), float(mpmath.fsum(errors))


def _general_switches(mode, pair):
    """x where a condition of the coefficient switches (bracketed on a grid, then refined),
    and the centres of q_theta and q_old."""
    (m, s), (mp_, sp_), (mo, so) = pair.theta, pair.p, pair.theta_old

    def log_density(x, loc, log_scale):
        return -0.5 * ((x - loc) / math.exp(log_scale)) ** 2 - log_scale

    def t_u(x):
        log_q = log_density(x, m, s)
        return log_density(x, mp_, sp_) - log_q, log_q - log_density(x, mo, so)

    width = 40 * math.exp(max(s, so))
    grid = np.linspace(mo - width, mo + width, GENERAL_GRID)
    points = {m, m - math.exp(s), m + math.exp(s), mo}
    for relation in mode.coefficient.atoms(Relational):
        h = sp.lambdify((LOG_RATIO, LOG_WEIGHT), relation.lhs - relation.rhs, "numpy")

        def switch(x):
            with np.errstate(all="ignore"):
                return np.asarray(h(*t_u(x)), dtype=np.float64)

        values = switch(grid)
        finite = np.isfinite(values)
        change = finite[:-1] & finite[1:] & (np.sign(values[:-1]) * np.sign(values[1:]) < 0)
        for i in np.nonzero(change)[0]:
            points.add(float(brentq(lambda x: float(switch(x)), grid[i], grid[i + 1], xtol=1e-14)))
    return sorted(points)


def general_gradient(mode, pair):
    """A coefficient that is not a function of t alone (a weight inside a clamp): exact
    sums at two precisions (softmax), mpmath.quad at two precisions (normal)."""
    function = sp.lambdify((LOG_RATIO, LOG_WEIGHT), mode.coefficient, "mpmath")
    if pair.family == "softmax":
        high, scale = _general_softmax_at(function, pair, DPS_HIGH)
        low, _ = _general_softmax_at(function, pair, DPS_LOW)
        with mpmath.workdps(DPS_HIGH):
            difference = math.sqrt(float(mpmath.fsum((a - b) ** 2 for a, b in zip(high, low))))
            floor = float(scale) * EXACT_SUM_FLOOR
        gradient = np.array([float(v) for v in high])
        return gradient, difference + floor + ROUNDING_REL * float(np.linalg.norm(gradient))
    switches = _general_switches(mode, pair)
    low, low_error = _general_normal_at(function, switches, pair, GENERAL_DPS[0])
    high, high_error = _general_normal_at(function, switches, pair, GENERAL_DPS[1])
    error = float(np.linalg.norm(high - low)) + QUAD_SAFETY * (high_error + low_error) \
        + ROUNDING_REL * float(np.linalg.norm(high))
    return high, error
