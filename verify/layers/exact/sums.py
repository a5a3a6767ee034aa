"""E_q[f] as exact sums: over a categorical vocabulary (in blocks) and over the Poisson counts
(within a window around the peak term, the rest bounded).  Terms that overflow float64
are summed in log space."""
from __future__ import annotations

import functools
import math

import numpy as np

from verify.core.dtypes import EPS
from verify.layers.exact.evaluate import _unscaled, evaluate, evaluate_parts
from verify.layers.exact.integral import TAIL_DROP, TAIL_SAFETY, ExactError, Integral
from verify.layers.exact.tails import growth

__all__ = ["categorical_expectation", "categorical_mean_and_variance", "poisson_expectation"]


class _SumTerms(tuple):
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
    return _SumTerms(terms, term_err, log_abs, m, relative)


def categorical_expectation(p, q, node):
    """E_q[f] over a categorical vocabulary."""
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


@functools.lru_cache(maxsize=1024)
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
    mu_p, mu_q = p.params["mu"], q.params["mu"]
    direction = 1 if mu_p > mu_q else -1
    series = growth(node, direction)
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


def poisson_expectation(p, q, node):
    """E_q[f] over the Poisson counts."""
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
