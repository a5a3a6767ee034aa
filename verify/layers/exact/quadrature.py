"""E_q[f] over a continuous support: adaptive Gauss-Legendre on the mapped line, tails cut
where the integrand has fallen out of float64's reach (or integrated on in mpmath).

Whether a tail converges is decided by verify.layers.exact.tails; a convergent tail is
truncated where log|integrand| has fallen ``TAIL_DROP`` nats below its peak beyond every
breakpoint.  Kinks of f (zeros of an Abs or of a Min/Max difference) become breakpoints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from verify.core.dtypes import EPS
from verify.layers.exact.evaluate import evaluate, plain, switches
from verify.layers.exact.integral import TAIL_DROP, TAIL_SAFETY, ExactError, Integral
from verify.layers.exact.integrand import Integrand, SupportMapping
from verify.layers.exact.tails import decide

__all__ = ["continuous_expectation", "PROBE"]

# Interval acceptance: |G21 - G10| at most this fraction of the integral of |g|
# (spread over the range by length); 1e-14 leaves room under the 1e-8 target.
REL_TOL = 1e-14
# Slopes of the log-integrand within this band of zero are borderline: decided by the power of u.
SLOPE_TOL = 1e-3
MAX_ROUNDS = 80
MAX_INTERVALS = 20_000
# The ladder stops where the log-densities themselves are uncertain by this many nats
# (far out, log p - log q is the difference of two huge numbers and carries no information).
MAX_DENSITY_ERROR = 0.1
# A tail integrated in mpmath starts where the float64 log-densities are this accurate.
FAR_START_DENSITY_ERROR = 1e-12
PROBE = tuple(2.0 ** (k / 4) for k in range(-4, 37))  # 0.5 .. 512
_GAUSS_LEGENDRE_10 = np.polynomial.legendre.leggauss(10)
_GAUSS_LEGENDRE_21 = np.polynomial.legendre.leggauss(21)


# ----------------------------------------------------------------------------------
# tails


@dataclass(frozen=True)
class _TailCut:
    end: float        # truncation point in u (signed)
    bound: float      # bound on |integral beyond end|
    divergent: bool
    sign: float       # sign of the integrand far out (for a divergent tail)
    far: float = 0.0  # > 0: integrate beyond ``end`` in mpmath, the integrand decaying like exp(-far |u|)


def _fit_slope(us, hs):
    """Slope s and power k of h ~ s u + k log u + c through the last three points."""
    a = np.array([[u, math.log(u), 1.0] for u in us])
    s, k, _ = np.linalg.solve(a, np.array(hs))
    return s, k


def _cut_tail(integrand, direction, peak_hint, decided=None, min_u=0.0):
    """Truncation of one tail, from bounds on log|integrand| along a ladder.

    ``decided``: None, or the tail analysis' ("finite", rate) (verify.layers.exact.tails; rate
    is the exponential decay of the integrand in u where known).  A decided tail is
    truncated where the bound has fallen TAIL_DROP below the peak beyond every
    breakpoint (``min_u``); where the float64 ladder cannot get there (log-densities too
    uncertain, or a slow power-law decay) the rest is integrated in mpmath
    (verify.layers.exact.highprec).  Undecided tails (an expression the analysis cannot follow)
    fall back on the ladder's slopes: convergence read from the upper bound, divergence
    from the lower bound, and an ExactError when neither settles it.
    """
    us = np.array(PROBE) * direction
    integrand(us)
    upper_all, lower_all, m = integrand.last_upper, integrand.last_lower, integrand.last_m
    probe_u, upper, lower, signs, density_errors = [], [], [], [], []
    density_err = integrand.last_density_err
    for u, hi, lo, mm, d_err in zip(us, upper_all, lower_all, m, density_err):
        if np.isnan(hi) or hi == np.inf or not d_err <= MAX_DENSITY_ERROR:
            break
        probe_u.append(abs(u))
        upper.append(max(hi, -1e300))  # -inf: exactly zero with zero error
        lower.append(lo)
        signs.append(np.sign(mm))
        density_errors.append(float(d_err))
    if len(upper) < 4:
        raise ExactError("the integrand is not finite near the centre of the distribution")
    peak = max(peak_hint, max(upper))
    if decided is not None:
        rate = decided[1]
        for j in range(len(upper) - 1):
            later = upper[j:]
            if (probe_u[j] >= min_u and upper[j] <= peak - TAIL_DROP
                    and all(b <= a for a, b in zip(later, later[1:]))):
                chord = (upper[j + 1] - upper[j]) / (probe_u[j + 1] - probe_u[j])
                # the slower of the observed and the asymptotic decay
                slope = min(-chord, rate) if rate else -chord
                bound = TAIL_SAFETY * math.exp(upper[j]) / slope if slope > 0 else math.inf
                if math.isfinite(bound):
                    return _TailCut(end=direction * probe_u[j], bound=bound, divergent=False, sign=signs[-1])
        # not truncated in float64: the rest in mpmath (a faster than exponential decay
        # is integrated as if at rate 1, which only spreads the nodes further out)
        # mpmath from the last probe where the float64 log-densities are still accurate
        # (further out their error reaches MAX_DENSITY_ERROR, and the integrand's with it)
        accurate = [j for j, d in enumerate(density_errors) if d <= FAR_START_DENSITY_ERROR]
        start = probe_u[accurate[-1]] if accurate else probe_u[0]
        return _TailCut(end=direction * start, bound=0.0, divergent=False, sign=signs[-1], far=rate or 1.0)
    s_up, k_up = _fit_slope(probe_u[-3:], upper[-3:])
    converges = s_up < -SLOPE_TOL or (abs(s_up) <= SLOPE_TOL and k_up < -2)
    if not converges:
        known = [j for j, value in enumerate(lower) if np.isfinite(value)]
        if len(known) >= 3 and decided is None:
            # the farthest probes whose lower bound is still informative
            s_lo, k_lo = _fit_slope([probe_u[j] for j in known[-3:]], [lower[j] for j in known[-3:]])
            if s_lo > SLOPE_TOL or (abs(s_lo) <= SLOPE_TOL and k_lo >= -0.5):
                return _TailCut(end=direction * probe_u[-1], bound=math.inf, divergent=True, sign=signs[-1])
        raise ExactError("cannot decide whether a tail integral converges")
    # first probe where the bound is TAIL_DROP below the peak and falls at every later probe
    for j in range(len(upper) - 1):
        later = upper[j:]
        if probe_u[j] >= min_u and upper[j] <= peak - TAIL_DROP and all(b <= a for a, b in zip(later, later[1:])):
            chord = (upper[j + 1] - upper[j]) / (probe_u[j + 1] - probe_u[j])
            rate = min(-chord, -s_up) if s_up < 0 else -chord
            bound = TAIL_SAFETY * math.exp(upper[j]) / rate if rate > 0 else math.inf
            return _TailCut(end=direction * probe_u[j], bound=bound, divergent=False, sign=signs[-1])
    rate = -s_up if s_up < 0 else -k_up / probe_u[-1]
    bound = TAIL_SAFETY * math.exp(min(upper[-1], 700.0)) * (probe_u[-1] if s_up >= 0 else 1) / rate
    return _TailCut(end=direction * probe_u[-1], bound=bound, divergent=False, sign=signs[-1])


# ----------------------------------------------------------------------------------
# adaptive Gauss-Legendre


def _gauss_legendre_rule(integrand, lo, hi, nodes, weights):
    half = (hi - lo) / 2
    mid = (hi + lo) / 2
    u = mid[:, None] + half[:, None] * nodes[None, :]
    g, g_err, _, _ = integrand(u.ravel())
    g = g.reshape(u.shape)
    g_err = g_err.reshape(u.shape)
    value = half * (g @ weights)
    round_err = half * (g_err @ weights) + half * len(weights) * EPS * (np.abs(g) @ weights)
    magnitude = half * (np.abs(g) @ weights)
    return value, round_err, magnitude


def _adaptive_quadrature(integrand, points):
    lo = np.array(points[:-1], dtype=np.float64)
    hi = np.array(points[1:], dtype=np.float64)
    total_length = points[-1] - points[0]
    accepted_value, accepted_err, accepted_round = [], [], []
    scale = 0.0
    for _ in range(MAX_ROUNDS):
        v21, r21, mag = _gauss_legendre_rule(integrand, lo, hi, *_GAUSS_LEGENDRE_21)
        v10, r10, _ = _gauss_legendre_rule(integrand, lo, hi, *_GAUSS_LEGENDRE_10)
        if not (np.all(np.isfinite(v21)) and np.all(np.isfinite(v10))):
            raise ExactError("the integrand is not finite inside the integration range")
        scale = max(scale, float(np.sum(mag)) + sum(abs(v) for v in accepted_value))
        q_err = np.abs(v21 - v10)
        local_tol = REL_TOL * scale * (hi - lo) / total_length
        done = (q_err <= local_tol) | (q_err <= r21 + r10) | ((hi - lo) < 1e-12 * max(1.0, total_length))
        accepted_value += list(v21[done])
        accepted_err += list(q_err[done])
        accepted_round += list(r21[done])
        lo, hi = lo[~done], hi[~done]
        if lo.size == 0:
            break
        mid = (lo + hi) / 2
        lo, hi = np.concatenate([lo, mid]), np.concatenate([mid, hi])
        if lo.size > MAX_INTERVALS:
            raise ExactError("adaptive quadrature needs more than the allowed number of intervals")
    else:
        raise ExactError(f"adaptive quadrature did not converge in {MAX_ROUNDS} rounds")
    order = np.argsort(np.abs(accepted_value))
    value = math.fsum(np.asarray(accepted_value)[order])
    error = math.fsum(accepted_err) + math.fsum(accepted_round) + EPS * len(accepted_value) * scale
    return value, error


KINK_SAMPLES = 64
KINK_BISECTIONS = 60


def _log_ratio(integrand, u):
    point, _, _ = integrand.mapping.point(u)
    logp, logp_err = integrand.p.logpdf(point)
    logq, logq_err = integrand.q.logpdf(point)
    with np.errstate(invalid="ignore"):
        return logp - logq, logp_err + logq_err


def _kinks(integrand, switch_nodes, points):
    """Points u where some switch changes sign, found on a fine sampling and bisected."""
    if not switch_nodes:
        return []
    lo, hi = np.array(points[:-1]), np.array(points[1:])
    steps = np.linspace(0.0, 1.0, KINK_SAMPLES + 1)
    u = (lo[:, None] + (hi - lo)[:, None] * steps[None, :]).ravel()
    u = np.unique(u)
    t, t_err = _log_ratio(integrand, u)
    roots = []
    for switch in switch_nodes:
        def sign(at_u):
            tt, tt_err = _log_ratio(integrand, at_u)
            m, e, _ = evaluate(switch, tt, tt_err)
            return np.sign(plain(m, e))
        m, e, _ = evaluate(switch, t, t_err)
        s = np.sign(plain(m, e))
        change = np.nonzero((s[:-1] * s[1:] < 0) & np.isfinite(s[:-1]) & np.isfinite(s[1:]))[0]
        if change.size == 0:
            continue
        a, b = u[change], u[change + 1]
        sa = s[change]
        for _ in range(KINK_BISECTIONS):
            mid = (a + b) / 2
            sm = sign(mid)
            left = sm == sa
            a, b = np.where(left, mid, a), np.where(left, b, mid)
        roots.extend(((a + b) / 2).tolist())
    return roots


def _u_direction(end):
    """+1 when the end of the support is reached as u -> +inf, -1 for u -> -inf."""
    if end[0] == "inf":
        return end[1]
    return -end[2]


def continuous_expectation(p, q, node):
    """E_q[f] over a continuous support (the pair's common one)."""
    mapping = SupportMapping(p, q)
    integrand = Integrand(p, q, node, mapping)
    decisions = {_u_direction(e): d for e, d in decide(p, q, node, mapping.support).items()}
    infinite = {float(d[1]) for d in decisions.values() if d is not None and d[0] == "infinite"}
    if infinite:
        return Integral(math.inf * infinite.pop(), 0.0) if len(infinite) == 1 else Integral(math.nan, 0.0)
    centre = np.array(mapping.breaks + [0.0])
    _, _, h_centre, _ = integrand(centre)
    peak_hint = float(np.max(h_centre[np.isfinite(h_centre)])) if np.any(np.isfinite(h_centre)) else -1e300
    right = _cut_tail(integrand, 1.0, peak_hint, decisions.get(1), max([b for b in mapping.breaks if b > 0], default=0.0))
    left = _cut_tail(integrand, -1.0, peak_hint, decisions.get(-1), max([-b for b in mapping.breaks if b < 0], default=0.0))
    if right.divergent or left.divergent:
        signs = {float(t.sign) for t in (right, left) if t.divergent}
        if len(signs) == 1 and signs != {0.0}:
            return Integral(math.inf * signs.pop(), 0.0)
        return Integral(math.nan, 0.0)
    lo, hi = left.end, right.end
    points = sorted({lo, hi, *[b for b in mapping.breaks if lo < b < hi],
                     *[d * u for d in (1, -1) for u in PROBE if lo < d * u < hi]})
    grid = np.linspace(lo, hi, 17)
    points = sorted(set(points) | set(grid.tolist()))
    kinks = _kinks(integrand, switches(node), points)
    points = sorted(set(points) | set(kinks))
    value, error = _adaptive_quadrature(integrand, points)
    value_parts, error = [value], error + left.bound + right.bound
    for tail, direction in ((right, 1.0), (left, -1.0)):
        if tail.far:
            from verify.layers.exact.highprec import tail_integral

            far_breaks = [abs(b) for b in mapping.breaks if b * direction > abs(tail.end)]
            far_value, far_error = tail_integral(p, q, node, mapping, tail.end, direction, tail.far, far_breaks)
            value_parts.append(far_value)
            error += far_error
    return Integral(math.fsum(value_parts), error + EPS * sum(abs(v) for v in value_parts))
