"""E_q[g(t)] for t = log p - log q: adaptive Gauss-Legendre on a mapped line, exact sums.

Continuous supports are mapped to u on the whole line (x = c + w sinh u on the real
line, x = base + s e^u on a half-line, x = logistic(u) on (0, 1)), so every tail of
every family becomes at worst an exponential in u, and endpoint singularities of
gamma and beta densities become smooth exponential tails.  The integrand is formed
in log space: exp(log q + log J + e) * m with f = m e^e.

Tails: whether a tail converges is decided by verify.exact.tails from the families'
tail exponents and the estimator's growth (not from the integrand's slope).  A
convergent tail is truncated where log|integrand| has fallen ``TAIL_DROP`` nats below
its peak beyond every breakpoint, the rest bounded by exp(h) / slope times a safety
factor; where float64 cannot get there (uncertain log-densities, slow power-law decay)
the rest is integrated in mpmath (verify.exact.highprec).  Only an estimator whose growth
the analysis cannot follow falls back on the slopes along a ladder of probes.

Error: |G21 - G10| per interval (the 21-point rule is far more accurate than the
10-point rule it is compared with), plus the propagated rounding bound of every node
value, plus the tail bounds.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from verify.exact.evaluate import EPS, Node, _unscaled, evaluate, evaluate_parts, plain, switches
from verify.exact.families import Family, Point

__all__ = ["Integral", "ExactError", "expectation"]

# The integral is truncated where the log-integrand is this many nats below its
# peak: exp(-80) ~ 2e-35, far below the 1e-16 relative resolution of a float64.
TAIL_DROP = 80.0
# Safety factor on the tail bound exp(h) / |slope| (the slope is estimated from chords).
TAIL_SAFETY = 4.0
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
_G10 = np.polynomial.legendre.leggauss(10)
_G21 = np.polynomial.legendre.leggauss(21)


class ExactError(Exception):
    """The exact layer could not give an honest number (not converged or undecidable)."""


@dataclass(frozen=True)
class Integral:
    value: float  # may be +-inf (divergent) or nan (divergent both ways)
    error: float  # absolute error bound (0 for an infinite value)
    # beyond float64: value is +-inf, the true value is sign * 10**log10 within a factor
    # (1 +- rel_error); log10 is None for an ordinary float value
    log10: float | None = None
    rel_error: float = 0.0

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) or self.log10 is not None

    @property
    def beyond_float(self) -> bool:
        return self.log10 is not None


# ----------------------------------------------------------------------------------
# mappings of a support onto the whole line


# Breakpoints at a component's location plus and minus these multiples of its scale: a
# narrow component far from q's centre is a sliver in u, which an interval's nodes
# would step over; its mass is where these breakpoints are.
_SPREAD = (0.5, 1, 2, 4, 8, 16, 40)


class _Mapping:
    def __init__(self, p: Family, q: Family):
        from verify.exact.families import common_support

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
                              for x in [loc] + [loc + sign * k * s for sign in (-1, 1) for k in _SPREAD]
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
    mp_, sp_ = p.params["loc"], p.params["scale"]
    mq, sq = q.params["loc"], q.params["scale"]
    inv = 1.0 / (sp_ * sq)
    slope = (sq - sp_) * inv
    offset = (mq * sp_ - mp_ * sq) * inv
    zp, zq = (x - mp_) / sp_, (x - mq) / sq
    d = x * slope + offset
    s = zp + zq
    log_ratio = math.log(sp_) - math.log(sq)
    t = -0.5 * d * s - log_ratio
    d_err = 8 * EPS * (np.abs(x) * abs(slope) + abs(mq * sp_ * inv) + abs(mp_ * sq * inv))
    s_err = 4 * EPS * (np.abs(zp) + np.abs(zq))
    # the node x itself is off by up to 2 eps |x| (its mapping): dt/dx = -(zp/sp - zq/sq)
    x_err = 2 * EPS * np.abs(x) * np.abs(zp / sp_ - zq / sq)
    t_err = (0.5 * (np.abs(d) * s_err + np.abs(s) * d_err + d_err * s_err) + 4 * EPS * (np.abs(0.5 * d * s) + abs(log_ratio))
             + x_err)
    return t, t_err


class _Integrand:
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


# ----------------------------------------------------------------------------------
# tails


@dataclass(frozen=True)
class _Tail:
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


def _tail(integrand, direction, peak_hint, decided=None, min_u=0.0):
    """Truncation of one tail, from bounds on log|integrand| along a ladder.

    ``decided``: None, or the tail analysis' ("finite", rate) (verify.exact.tails; rate
    is the exponential decay of the integrand in u where known).  A decided tail is
    truncated where the bound has fallen TAIL_DROP below the peak beyond every
    breakpoint (``min_u``); where the float64 ladder cannot get there (log-densities too
    uncertain, or a slow power-law decay) the rest is integrated in mpmath
    (verify.exact.highprec).  Undecided tails (an expression the analysis cannot follow)
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
                    return _Tail(end=direction * probe_u[j], bound=bound, divergent=False, sign=signs[-1])
        # not truncated in float64: the rest in mpmath (a faster than exponential decay
        # is integrated as if at rate 1, which only spreads the nodes further out)
        # mpmath from the last probe where the float64 log-densities are still accurate
        # (further out their error reaches MAX_DENSITY_ERROR, and the integrand's with it)
        accurate = [j for j, d in enumerate(density_errors) if d <= FAR_START_DENSITY_ERROR]
        start = probe_u[accurate[-1]] if accurate else probe_u[0]
        return _Tail(end=direction * start, bound=0.0, divergent=False, sign=signs[-1], far=rate or 1.0)
    s_up, k_up = _fit_slope(probe_u[-3:], upper[-3:])
    converges = s_up < -SLOPE_TOL or (abs(s_up) <= SLOPE_TOL and k_up < -2)
    if not converges:
        known = [j for j, value in enumerate(lower) if np.isfinite(value)]
        if len(known) >= 3 and decided is None:
            # the farthest probes whose lower bound is still informative
            s_lo, k_lo = _fit_slope([probe_u[j] for j in known[-3:]], [lower[j] for j in known[-3:]])
            if s_lo > SLOPE_TOL or (abs(s_lo) <= SLOPE_TOL and k_lo >= -0.5):
                return _Tail(end=direction * probe_u[-1], bound=math.inf, divergent=True, sign=signs[-1])
        raise ExactError("cannot decide whether a tail integral converges")
    # first probe where the bound is TAIL_DROP below the peak and falls at every later probe
    for j in range(len(upper) - 1):
        later = upper[j:]
        if probe_u[j] >= min_u and upper[j] <= peak - TAIL_DROP and all(b <= a for a, b in zip(later, later[1:])):
            chord = (upper[j + 1] - upper[j]) / (probe_u[j + 1] - probe_u[j])
            rate = min(-chord, -s_up) if s_up < 0 else -chord
            bound = TAIL_SAFETY * math.exp(upper[j]) / rate if rate > 0 else math.inf
            return _Tail(end=direction * probe_u[j], bound=bound, divergent=False, sign=signs[-1])
    rate = -s_up if s_up < 0 else -k_up / probe_u[-1]
    bound = TAIL_SAFETY * math.exp(min(upper[-1], 700.0)) * (probe_u[-1] if s_up >= 0 else 1) / rate
    return _Tail(end=direction * probe_u[-1], bound=bound, divergent=False, sign=signs[-1])


# ----------------------------------------------------------------------------------
# adaptive Gauss-Legendre


def _rule(integrand, lo, hi, nodes, weights):
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


def _adaptive(integrand, points):
    lo = np.array(points[:-1], dtype=np.float64)
    hi = np.array(points[1:], dtype=np.float64)
    total_length = points[-1] - points[0]
    accepted_value, accepted_err, accepted_round = [], [], []
    scale = 0.0
    for _ in range(MAX_ROUNDS):
        v21, r21, mag = _rule(integrand, lo, hi, *_G21)
        v10, r10, _ = _rule(integrand, lo, hi, *_G10)
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


def _continuous(p, q, node):
    from verify.exact import tails

    mapping = _Mapping(p, q)
    integrand = _Integrand(p, q, node, mapping)
    decisions = {_u_direction(e): d for e, d in tails.decide(p, q, node, mapping.support).items()}
    infinite = {float(d[1]) for d in decisions.values() if d is not None and d[0] == "infinite"}
    if infinite:
        return Integral(math.inf * infinite.pop(), 0.0) if len(infinite) == 1 else Integral(math.nan, 0.0)
    centre = np.array(mapping.breaks + [0.0])
    _, _, h_centre, _ = integrand(centre)
    peak_hint = float(np.max(h_centre[np.isfinite(h_centre)])) if np.any(np.isfinite(h_centre)) else -1e300
    right = _tail(integrand, 1.0, peak_hint, decisions.get(1), max([b for b in mapping.breaks if b > 0], default=0.0))
    left = _tail(integrand, -1.0, peak_hint, decisions.get(-1), max([-b for b in mapping.breaks if b < 0], default=0.0))
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
    value, error = _adaptive(integrand, points)
    value_parts, error = [value], error + left.bound + right.bound
    for tail, direction in ((right, 1.0), (left, -1.0)):
        if tail.far:
            from verify.exact.highprec import tail_integral

            far_breaks = [abs(b) for b in mapping.breaks if b * direction > abs(tail.end)]
            far_value, far_error = tail_integral(p, q, node, mapping, tail.end, direction, tail.far, far_breaks)
            value_parts.append(far_value)
            error += far_error
    return Integral(math.fsum(value_parts), error + EPS * sum(abs(v) for v in value_parts))


# ----------------------------------------------------------------------------------
# exact sums


class _Terms(tuple):
    """(terms, term_err, log_abs, m) unpacks as before; .relative is each term's relative error."""

    def __new__(cls, terms, term_err, log_abs, m, relative):
        self = super().__new__(cls, (terms, term_err, log_abs, m))
        self.relative = relative
        return self


def _sum_terms(logp, logp_err, logq, logq_err, node, direct=None):
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        t = logp - logq
        t_err = logp_err + logq_err + EPS * np.abs(t)
        if direct is not None:
            t, t_err = np.where(direct[1] < t_err, direct[0], t), np.minimum(direct[1], t_err)
        m, e, err = evaluate(node, t, t_err)
        log_weight = logq + e
        weight = np.exp(log_weight)
        terms = m * weight
        w_err = logq_err + 2 * EPS * (np.abs(logq) + np.abs(e))
        relative = err + np.abs(m) * np.expm1(np.minimum(w_err, 700.0))
        term_err = weight * relative
        log_abs = log_weight + np.log(np.abs(m))
        # relative error of each term, finite even where the term overflows
        relative = relative / np.abs(m)
    return _Terms(terms, term_err, log_abs, m, relative)


def _sum(terms, term_err):
    if not np.all(np.isfinite(terms)):
        raise ExactError("a term of the exact sum is not finite")
    value = float(np.sum(terms))  # pairwise summation
    levels = math.ceil(math.log2(max(terms.size, 2))) + 1
    error = float(np.sum(term_err)) + levels * EPS * float(np.sum(np.abs(terms)))
    return value, error


def _categorical(p, q, node):
    logp, logp_err = p.logpmf()
    logq, logq_err = q.logpmf()
    parts = _sum_terms(logp, logp_err, logq, logq_err, node, direct=_categorical_log_ratio(p, q))
    terms, term_err, log_abs, m = parts
    if not np.all(np.isfinite(terms)):
        return _log_space_sum(log_abs, m, parts.relative)
    # summed by blocks as in categorical_mean_and_variance: the same f gives the same mean
    value = _checked_fsum([float(np.sum(terms[block])) for block in _blocks(terms.size)])
    error = float(np.sum(term_err)) + _sum_levels(terms.size) * EPS * float(np.sum(np.abs(terms)))
    return Integral(value, error)


def _log_space_sum(log_abs, m, relative):
    """A sum whose terms overflow float64, in log space: every term's log-magnitude is
    finite, the terms have one sign (no cancellation: a variance, or k3's terms), and the
    relative error is the largest relative error of a term plus the summation's."""
    from scipy.special import logsumexp

    if np.any(np.isnan(log_abs)) or np.any(log_abs == np.inf):
        raise ExactError("a term of the exact sum is not finite")
    live = np.isfinite(log_abs)
    signs = np.sign(m[live])
    if signs.size == 0:
        return Integral(0.0, 0.0)
    if np.any(signs != signs[0]):
        raise ExactError("a sum beyond the float64 range has terms of both signs")
    total = float(logsumexp(log_abs[live]))
    rel = relative[live]
    if not np.all(np.isfinite(rel)):
        raise ExactError("a term of the exact sum has no error bound")
    # exp of a log-magnitude known to within d is known to relative expm1(d)
    rel_error = float(np.max(rel)) + (math.log2(max(int(live.sum()), 2)) + 4) * EPS * (1 + abs(total))
    return Integral(math.inf * float(signs[0]), 0.0, log10=total / math.log(10), rel_error=rel_error)


def _categorical_log_ratio(p, q):
    """(t, error bound) for a categorical pair without the two normalizers' rounding:
    t = d - log1p(sum q expm1(d)) with d the logit differences, so a near pair (KL ~ 1e-19)
    keeps its relative accuracy; None where it does not apply (-inf logits, |d| > 600)."""
    if p.logits is None or q.logits is None or p.logits.size != q.logits.size:
        return None
    if p.log_normalizer is not None or q.log_normalizer is not None:
        return None
    d = p.logits - q.logits
    if not np.all(np.isfinite(d)) or np.max(np.abs(d)) > 600:
        return None
    logq, logq_err = q.logpmf()
    weight = np.exp(logq)
    w_rel = np.expm1(logq_err + EPS * np.abs(logq))
    grow = np.expm1(d)
    terms = weight * grow
    s = math.fsum(terms.tolist())
    magnitude = float(np.sum(np.abs(terms)))
    if not s > -0.5:
        return None
    # each term: weight (relative w_rel + eps) times expm1(d) (d off by eps|d|: relative
    # eps |d| e^|d| / |expm1 d| <= 2 eps (1 + |d|) e^|d|, plus LIBM ulps); the exact sum
    s_err = float(np.sum(np.abs(terms) * (w_rel + 2 * EPS * (1 + np.abs(d)) * np.exp(np.abs(d)) + 8 * EPS))) \
        + EPS * abs(s)
    c = math.log1p(s)
    c_err = s_err / (1 - abs(s) - s_err) + 4 * EPS * abs(c) if abs(s) + s_err < 1 else math.inf
    t = d - c
    t_err = EPS * np.abs(d) + c_err + EPS * np.abs(t)
    return t, t_err


def _pair_arrays(p, q):
    """t, its error, q, q's relative error and two products of them used by the variance
    bound, over a vocabulary: computed once per pair."""
    key = (id(p), id(p.logits), id(q.logits))
    cached = q.__dict__.get("_pair_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    logp, logp_err = p.logpmf()
    logq, logq_err = q.logpmf()
    t = logp - logq
    t_err = logp_err + logq_err + EPS * np.abs(t)
    direct = _categorical_log_ratio(p, q)
    if direct is not None:
        t, t_err = np.where(direct[1] < t_err, direct[0], t), np.minimum(direct[1], t_err)
    weight = np.exp(logq)
    w_rel = np.expm1(logq_err + EPS * np.abs(logq))
    arrays = (t, t_err, weight, w_rel, weight * (1 + w_rel), w_rel + 3 * EPS)
    object.__setattr__(q, "_pair_cache", (key, arrays))  # a cache, not state
    return arrays


def _dot(a, b) -> float:
    """sum(a * b) in one pass without a temporary (numpy's own loop: the same result
    whatever the BLAS threading)."""
    return float(np.einsum("i,i->", a, b))


# A vocabulary is evaluated in blocks of this many entries (125 KiB of float64): the
# temporaries of an evaluation then stay in cache and below glibc's mmap threshold
# (128 KiB), instead of being streamed from memory and page-faulted afresh (2-3x faster).
BLOCK = 16_000


@functools.lru_cache(maxsize=None)
def _pairwise_depth(n: int) -> int:
    """Roundings a term can pass through in numpy's pairwise sum of n terms: a plain loop
    below 8 terms; up to 128, eight interleaved loops, three combining levels and the
    left-over terms one by one; above, one level per halving (at multiples of 8)."""
    if n < 8:
        return max(n - 1, 0)
    if n <= 128:
        return n // 8 - 1 + 3 + n % 8
    half = n // 2 - (n // 2) % 8
    return 1 + max(_pairwise_depth(half), _pairwise_depth(n - half))


def _sum_levels(n: int) -> float:
    """Rounding of a sum of n terms, in eps of the sum of their magnitudes: blocks of BLOCK
    by np.sum (the first term, then plus the pairwise sum of the rest), the block sums by
    math.fsum (one more rounding).  Never below the ceil(log2 n) + 1 used before."""
    sizes = {min(n, BLOCK)} | ({n % BLOCK} if n > BLOCK and n % BLOCK else set())
    depth = max(1 + _pairwise_depth(size - 1) if size > 1 else 0 for size in sizes) + (n > BLOCK)
    return max(math.ceil(math.log2(max(n, 2))) + 1, depth / 2)


def categorical_mean_and_variance(p, q, node):
    """(E_q[f], Var_q[f]) over a categorical pair with one evaluation of f.

    Var = sum q (f - mean)^2 from the same values of f; each term's error is bounded by
    q (2 |f - mean| err + err^2) plus the rounding of the subtraction and the sum.
    Returns None when some f is beyond the float range (the general path handles it).

    The error bounds are sums of non-negative terms, expanded into single-pass dot
    products (no arrays for the bounds themselves); summed in any order such a sum is
    exact to n eps relative, so the bound is inflated by that much.
    """
    t, t_err, weight, w_rel, w_var, w_rel3 = _pair_arrays(p, q)
    n = t.size
    blocks = _blocks(n)
    values, value_errs = [], []  # f and its error bound, per block
    # mean: terms q f; |error| <= sum q (err + |f| w_rel) + the rounding of the sum
    sums, magnitude, error = [], 0.0, 0.0
    for block in blocks:
        f, e, f_err = evaluate_parts(node, t[block], t_err[block])
        if not _unscaled(e):
            return None
        f = np.broadcast_to(f, t[block].shape)
        f_err = np.broadcast_to(f_err, t[block].shape)
        values.append(f)
        value_errs.append(f_err)
        terms = f * weight[block]
        sums.append(float(np.sum(terms)))
        abs_terms = np.abs(terms)
        magnitude += float(np.sum(abs_terms))
        error += _dot(weight[block], f_err) + _dot(abs_terms, w_rel[block])
    value = _checked_fsum(sums)
    levels = _sum_levels(n)
    slack = 1.0 + (n + 8) * EPS
    mean = Integral(value, slack * error + levels * EPS * magnitude)
    # variance: terms q d^2 with d = f - mean and |error of d| <= d_err = err + c + eps |d|
    # (c the error of the mean); the bound sum q (1 + w_rel) d_err (2 |d| + d_err)
    # + sum q d^2 (w_rel + 3 eps), expanded, with sum q (1 + w_rel) err^2 <= max(err) sum q (1 + w_rel) err
    c = mean.error
    sums, sum_a, a_err, a_ad, w_err, rest, max_errs = [], 0.0, 0.0, 0.0, 0.0, 0.0, []
    for block, f, f_err in zip(blocks, values, value_errs):
        d = f - mean.value
        sq_terms = weight[block] * d * d
        sums.append(float(np.sum(sq_terms)))
        ad = np.abs(d)
        weighted_ad = w_var[block] * ad
        sum_a += float(np.sum(weighted_ad))
        a_err += _dot(weighted_ad, f_err)
        a_ad += _dot(weighted_ad, ad)
        w_err += _dot(w_var[block], f_err)
        rest += _dot(sq_terms, w_rel3[block])
        max_errs.append(np.max(f_err))
    variance_value = _checked_fsum(sums)
    linear = 2 * (a_err + c * sum_a + EPS * a_ad)
    quadratic = (float(np.max(max_errs)) * w_err + c * c * float(np.sum(w_var)) + EPS * EPS * a_ad
                 + 2 * c * w_err + 2 * EPS * a_err + 2 * c * EPS * sum_a)
    # the terms are >= 0: their sum is the magnitude
    variance_error = slack * (linear + quadratic + rest) + levels * EPS * variance_value
    return mean, Integral(variance_value, variance_error)


def _blocks(n):
    return [slice(start, min(start + BLOCK, n)) for start in range(0, n, BLOCK)]


def _checked_fsum(sums) -> float:
    """The block sums (numpy's pairwise sums) added exactly rounded.  A block sum is finite
    unless a term is not finite or the sum overflows (not for terms q f with f finite and
    q <= 1): ExactError."""
    if not all(math.isfinite(x) for x in sums):
        raise ExactError("a term of the exact sum is not finite")
    return math.fsum(sums)


def _poisson_peak(p, q, node):
    """Where the terms q_k |f| peak: f grows like e^(a t) |t|^b with t linear in k (slope
    log(mu_p / mu_q)), so q_k e^(a t) is a Poisson weight of mean mu_q (mu_p/mu_q)^a."""
    from verify.exact import tails

    mu_p, mu_q = p.params["mu"], q.params["mu"]
    direction = 1 if mu_p > mu_q else -1
    series = tails.growth(node, direction)
    a = 0.0
    if series is not None and not isinstance(series, str) and series.terms:
        a = max(float(series.terms[0][1][0]), 0.0)
    log_mu = math.log(mu_q) + a * (math.log(mu_p) - math.log(mu_q))
    return max(mu_p, mu_q, math.exp(min(log_mu, math.log(1e9))))


# The Poisson sum runs over the counts where the terms are within WINDOW_DROP nats of
# their peak (found on a grid of GRID points); each term left out is below
# exp(peak - WINDOW_DROP + WINDOW_SLACK), the slack covering the change between grid points.
GRID = 4097
WINDOW_DROP = TAIL_DROP
WINDOW_SLACK = 20.0


def _poisson_terms(p, q, node, k):
    logp, logp_err = p.logpmf(k)
    logq, logq_err = q.logpmf(k)
    return _sum_terms(logp, logp_err, logq, logq_err, node)


def _poisson(p, q, node):
    mu = _poisson_peak(p, q, node)
    count = int(math.ceil(mu + 40 * math.sqrt(mu) + 100))
    while True:
        grid = np.unique(np.concatenate([np.round(np.linspace(0, count, GRID)),
                                         np.arange(max(count - 7, 0), count + 1)]))
        terms, term_err, log_abs, m = _poisson_terms(p, q, node, grid)
        bad = np.isnan(log_abs) | (log_abs == np.inf)
        if np.any(bad):
            return Integral(math.inf * (float(np.sign(m[np.argmax(bad)])) or 1.0), 0.0)
        peak = float(np.max(log_abs))
        last = np.maximum(log_abs[-8:], -1e300)
        ratios = np.diff(last)
        if last[-1] <= peak - TAIL_DROP and np.all(ratios < math.log(0.5)):
            # later ratios shrink (the k! of q wins over any growth of f in t, linear in k)
            rho = math.exp(float(ratios[-1]))
            tail = TAIL_SAFETY * math.exp(float(last[-1]) - peak) * rho / (1 - rho)  # relative to the peak term
            spacing = int(math.ceil(count / (GRID - 1))) + 1
            kept = grid[log_abs >= peak - WINDOW_DROP]
            lo, hi = int(max(0, kept.min() - spacing)), int(min(count, kept.max() + spacing))
            left_out = (count + 1) - (hi - lo + 1)
            left_out_rel = left_out * math.exp(-WINDOW_DROP + WINDOW_SLACK) + tail
            return _poisson_window(p, q, node, lo, hi, peak, left_out_rel)
        if count > 50_000_000:
            if np.all(ratios > 0):
                return Integral(math.inf * float(np.sign(m[-1])), 0.0)
            raise ExactError("the poisson sum does not settle within 5e7 terms")
        count *= 4


def _poisson_window(p, q, node, lo, hi, peak, left_out_rel, chunk=1_000_000):
    """The sum over counts lo..hi, in float64 or, when the terms overflow, in log space;
    plus a bound of left_out_rel times the peak term for everything left out."""
    from scipy.special import logsumexp

    sums, errors, magnitudes = [], 0.0, 0.0
    logs, rel_bound, signs = [], 0.0, set()
    overflow = False
    for start in range(lo, hi + 1, chunk):
        k = np.arange(start, min(hi + 1, start + chunk), dtype=np.float64)
        parts = _poisson_terms(p, q, node, k)
        terms, term_err, log_abs, m = parts
        if not np.all(np.isfinite(terms)):
            overflow = True
        if not overflow:
            sums.append(float(np.sum(terms)))
            errors += float(np.sum(term_err))
            magnitudes += float(np.sum(np.abs(terms)))
        live = np.isfinite(log_abs)
        if np.any(live):
            logs.append(float(logsumexp(log_abs[live])))
            rel_bound = max(rel_bound, float(np.max(parts.relative[live])))
            signs |= set(np.sign(m[live]).tolist())
    if not overflow:
        value = _checked_fsum(sums)
        levels = math.ceil(math.log2(max(hi - lo + 1, 2))) + 2
        return Integral(value, errors + levels * EPS * magnitudes + left_out_rel * math.exp(peak))
    signs.discard(0.0)
    if len(signs) != 1 or not math.isfinite(rel_bound):
        raise ExactError("a sum beyond the float64 range has terms of both signs")
    total = float(logsumexp(logs))
    rel_error = rel_bound + (math.log2(hi - lo + 2) + 4) * EPS * (1 + abs(total)) + left_out_rel * math.exp(peak - total)
    return Integral(math.inf * signs.pop(), 0.0, log10=total / math.log(10), rel_error=rel_error)


def expectation(p: Family, q: Family, node: Node) -> Integral:
    """E_q[f] for the f that ``node`` evaluates from t = log p - log q."""
    if q.name == "categorical":
        return _categorical(p, q, node)
    if q.name == "poisson":
        return _poisson(p, q, node)
    return _continuous(p, q, node)
