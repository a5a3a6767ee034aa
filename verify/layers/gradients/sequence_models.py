"""Exact sequence-level KL, estimator moments, control variate and gradients of a tabular
autoregressive pair (p, q), by recursion over the prefix tree (issue 22).

Sequences y = (y_1..y_T) ~ q, r_t = p(y_t | y_<t) / q(y_t | y_<t), t_t = log r_t.  Every
sequence is summed exactly: the sums over the V^T sequences are done depth by depth over
the prefix tree (``sequence_tree``), vectorised per depth, each prefix u holding the
conditional moments of the sum over its future positions.  With X(u) = sum_{s >= |u|} x_s
and x_s a per-token value, M(u) = E[X | u] and S(u) = Var[X | u]:

    M(u) = sum_v q(v|u) (x(u, v) + M(uv))
    S(u) = sum_v q(v|u) (S(uv) + (x(u, v) + M(uv) - M(u))^2)        (total variance)

(no E[X^2] - E[X]^2 cancellation: every term is >= 0).  The covariance of two sums is the
same recursion with the product of the two deviations.  The values, at the root:

- ``kl_qp`` = E_q[sum_t -t_t]; ``kl_pq`` = the same recursion under p of sum_t t_t.
- per estimator f: the Monte Carlo sum_t f(r_t) (x = f(r)), and the Rao-Blackwellised
  sum_t h(y_<t), h(u) = sum_v q(v|u) f(r(u, v)): M_rb(u) = h(u) + sum_v q M_rb(uv),
  S_rb(u) = sum_v q (S_rb(uv) + (M_rb(uv) - sum_w q M_rb(uw))^2).
- the control variate A + lambda B, A = sum_t -t_t, B = sum_t (r_t - 1):
  Var = Var A + 2 lambda Cov(A, B) + lambda^2 Var B, minimal at lambda* = -Cov(A, B) / Var B;
  Var at lambda* = Var(lambda_hat) - Var B (lambda_hat - lambda*)^2 for the float lambda_hat.
- gradients with respect to q's logits table theta: each term's per-sample gradient is
  sum_t c_t grad log q(y_t | y_<t), and grad_theta[u, v] log q(y_t | u) = [v = y_t] - q(v|u), so
  its expectation is G[u, v] = q(u) q(v|u) (C(u, v) - sum_w q(w|u) C(u, w)), C(u, v) = E[c_t | u, v]:
  grad KL(q||p): C = k1(u, v) + KL(q||p | uv) (the reward to go, Tang & Munos 2025);
  ``k1_loss`` C = 1 (d k1 / d log q): exactly 0; ``k2_loss`` C = k1(u, v); ``k3_loss`` C = 1 - r;
  ``k1_reward`` (REINFORCE with the summed k1) C = past k1 + k1(u, v) + KL(q||p | uv).
  The difference from grad KL is computed from the difference of the coefficients (no
  cancellation of two large vectors); norms, dot products by math.fsum.
  Extra terms: a :class:`UsageTerm` (a catalog entry's library mode, ``sequence_usage``)
  has C = pathwise(t) + scale (reward(t) + its reward to go, a recursion like M); a
  :class:`SampledCoefficients` (a torch term on every sequence, ``sequence_term``) gives
  c_t(y) per sequence, and G[u, v] = S(uv) - q(v|u) sum_w S(uw) with S(uv) the sum of
  q(y) c_t(y) over the sequences through uv (a bincount over the leaves per depth).

Infinities are decided exactly, from the -inf patterns (``sequence_tree.forward``): a
q-reachable token with p = 0 makes r = 0 there, so KL(q||p), the k1 sums and A are +inf
(every control-variate variance with them, lambda* undefined, the gradients against an
infinite KL undefined: null), and an estimator's sums take f(0+) there (the caller gives
the limit): an infinite limit makes its means that infinity and its variances +inf (a mean
of +-inf is reported with variance +inf, as in the exact layer).

Error bounds: every number is a :class:`Ball` (``balls``: rigorous radius per operation,
numpy's exp/log at a stated 4 ulps doubled); f's values and a term's coefficients come
from the caller with their own bounds (the API evaluates f and the catalog coefficients in
ball arithmetic, ``ball_expression``; a torch term's bound is the torch path's model).
Final scalars (ratios, square roots) are mpmath interval arithmetic.  A value that leaves the float64 range is not a number but
a finding: its block is reported undecided.  An mpmath per-sequence enumeration is the
test oracle (tests/test_sequence_models.py), not the bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import mpmath
import numpy as np

from verify.core.dtypes import EPS
from verify.layers.gradients.balls import Ball, _up, exact
from verify.layers.gradients.sequence_tree import MAX_SEQUENCES, Tree, forward, tree_length
from verify.errors import UsageError

__all__ = ["Bounded", "TokenFunction", "UsageTerm", "SampledCoefficients", "SequenceModelResult", "sequence_model",
           "GRADIENT_TERMS", "MAX_SEQUENCES", "SequenceUndecided"]

GRADIENT_TERMS = ("k1_loss", "k2_loss", "k3_loss", "k1_reward")
_ZERO = exact(0.0)
_IV_PREC = 80  # bits of the interval arithmetic on the final scalars


class SequenceUndecided(ArithmeticError):
    """A value could not be computed with a finite error bound (beyond float64)."""


@dataclass(frozen=True)
class Bounded:
    """A value with an absolute error bound; value +-inf has error 0; None: undefined."""

    value: float | None
    abs_error: float | None = 0.0


@dataclass(frozen=True)
class TokenFunction:
    """An estimator f as the engine needs it: ``evaluate(t, t_rad) -> (values, abs_errors)``
    elementwise for arrays of finite t = log r with radii (non-finite where f leaves float64),
    and ``at_zero() -> f(0+)`` (a float, possibly +-inf), asked only when r = 0 is reachable."""

    name: str
    evaluate: Callable
    at_zero: Callable


@dataclass(frozen=True)
class UsageTerm:
    """A per-token term as a library uses it, at sequence level: the sample gradient is
    sum_t C_t grad log q(y_t | y_<t) with C_t = pathwise(t_t) + reward_scale * (reward(t_t) +
    sum_{s > t} reward(t_s)) (past rewards drop out of the expectation).  ``pathwise`` and
    ``reward`` map a Ball of t to a Ball (None: 0): a loss through autograd has a pathwise
    part, a REINFORCE reward (scale 1) a reward part, a sequence-level weight
    exp(mean_t log(q_theta/q_old)) both (scale 1/T)."""

    name: str
    pathwise: Callable | None = None
    reward: Callable | None = None
    reward_scale: float = 1.0


@dataclass(frozen=True)
class SampledCoefficients:
    """A term evaluated on every sequence (a user's torch code): the sample gradient is
    sum_t c_t(y) grad log q(y_t | y_<t); ``mid`` and ``rad`` (V^T, T), sequences in
    lexicographic order, the bound of each c_t(y); entries of sequences q never
    samples are ignored."""

    name: str
    mid: np.ndarray
    rad: np.ndarray


@dataclass(frozen=True)
class SequenceModelResult:
    vocabulary: int
    length: int
    sequences: int
    kl_qp: Bounded
    kl_pq: Bounded
    estimators: dict          # name -> {"mc_mean": Bounded, "mc_variance", "rb_mean", "rb_variance"}
    control_variate: dict     # optimal_lambda, variance_at_optimal, variance_k1, variance_k3 -> Bounded
    gradients: dict           # term -> {"cosine_to_grad_kl_qp": Bounded, "relative_error": Bounded}
    undecided: dict = field(default_factory=dict)   # block -> reason
    notes: tuple = ()


def sequence_model(p_logits, q_logits, estimators=(), terms=()) -> SequenceModelResult:
    """Everything above for the tables ``p_logits``, ``q_logits`` (float64, shape
    (1 + V + ... + V^(T-1), V), -inf allowed, each row with a finite logit; checked by the
    API), the :class:`TokenFunction` s ``estimators`` and the extra gradient ``terms``
    (:class:`UsageTerm`, :class:`SampledCoefficients`; their rows follow the built-in ones)."""
    p_logits = np.ascontiguousarray(p_logits, dtype=np.float64)
    q_logits = np.ascontiguousarray(q_logits, dtype=np.float64)
    rows, vocabulary = q_logits.shape
    length = tree_length(rows, vocabulary)
    if vocabulary ** length > MAX_SEQUENCES:
        raise UsageError(f"{vocabulary}^{length} = {vocabulary ** length} sequences: more than the limit of "
                         f"{MAX_SEQUENCES} this exact enumeration takes")
    tree = forward(Tree(p_logits, q_logits, vocabulary, length))
    undecided, notes = {}, []
    names = list(GRADIENT_TERMS) + [term.name for term in terms]
    if len(set(names)) != len(names):
        raise UsageError(f"gradient terms named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    main = _main_block(tree, terms)
    root = _backward(tree, main)
    kl_qp = Bounded(math.inf) if tree.kl_qp_infinite else _checked(root["MA"], "kl_qp", undecided)
    kl_pq = Bounded(math.inf) if tree.kl_pq_infinite else _checked(root["Y"], "kl_pq", undecided)
    control = _control_variate(tree, root, undecided, notes)
    undecided.update(main.failed)
    gradients = _gradients(tree, main.totals, [n for n in names if n not in main.failed], undecided, notes)
    gradients = {name: gradients.get(name, {key: Bounded(None, None) for key in ("cosine_to_grad_kl_qp",
                                                                                   "relative_error")})
                 for name in names}
    moments = {}
    for function in estimators:
        try:
            moments[function.name] = _estimator_moments(tree, function)
        except SequenceUndecided as error:
            undecided[function.name] = str(error)
            moments[function.name] = {key: Bounded(None, None) for key in ("mc_mean", "mc_variance", "rb_mean",
                                                                           "rb_variance")}
    return SequenceModelResult(vocabulary, length, tree.sequences, kl_qp, kl_pq, moments, control, gradients,
                               undecided, tuple(notes))


# ----------------------------------------------------------------------------- the recursion


def _backward(tree: Tree, block) -> dict:
    """Run ``block(tokens, children, depth, a, b) -> {key: Ball (n,)}`` from the leaves to the
    root; ``children`` maps each key to the (n, V) Ball of the children's values (None at
    the last depth).  Returns the root's values as scalar Balls."""
    V = tree.vocabulary
    below = None
    for depth in reversed(range(tree.length)):
        n = V ** depth
        here = {}
        for a, b in tree.chunks(depth):
            children = None if below is None else {key: Ball(mid[a * V:b * V].reshape(b - a, V),
                                                             rad[a * V:b * V].reshape(b - a, V))
                                                   for key, (mid, rad) in below.items()}
            with np.errstate(all="ignore"):
                values = block(tree.tokens(depth, a, b), children, depth, a, b)
            for key, ball in values.items():
                if key not in here:
                    here[key] = (np.empty(n), np.empty(n))
                here[key][0][a:b], here[key][1][a:b] = ball.mid, ball.rad
        below = here
    return {key: Ball(mid[0], rad[0]) for key, (mid, rad) in below.items()}


def _child(children, key):
    return _ZERO if children is None else children[key]


def _moments_step(q, x, mask, below_mean, below_var):
    """(M, S) of a row from token values x (on ``mask``) and the children's (M, S)."""
    total = (x + below_mean).where(mask)
    mean = (q * total).sum()
    var = (q * (below_var + (total - mean[:, None]).square())).where(mask).sum()
    return total, mean, var


def _main_block(tree: Tree, terms=()):
    """KL(p||q), the control variate's A and B (A's mean is KL(q||p)), and the gradient
    sums, accumulated in ``block.totals`` as the recursion passes each row."""
    totals, failed, sums = {}, {}, {}
    skip_q = tree.kl_qp_infinite
    for term in terms if not skip_q else ():
        if isinstance(term, SampledCoefficients):
            try:
                sums[term.name] = _sampled_sums(tree, term)
            except SequenceUndecided as error:
                failed[term.name] = str(error)

    def block(tokens, children, depth, a, b):
        out = {}
        if not tree.kl_pq_infinite:
            mask_p = tokens.reach_p[:, None] & tokens.p_pos
            out["Y"] = (tokens.p * (tokens.t + _child(children, "Y"))).where(mask_p).sum()
        if skip_q:
            return out
        live = tokens.live
        k1 = -tokens.t
        excess = tokens.t.expm1().where(live)  # r - 1
        total_a, out["MA"], out["SA"] = _moments_step(tokens.q, k1, live, _child(children, "MA"),
                                                      _child(children, "SA"))
        total_b, out["MB"], out["SB"] = _moments_step(tokens.q, excess, live, _child(children, "MB"),
                                                      _child(children, "SB"))
        deviations = (total_a - out["MA"][:, None]) * (total_b - out["MB"][:, None])
        out["C"] = (tokens.q * (_child(children, "C") + deviations)).where(live).sum()
        gradient = _expected_gradient(tree, tokens, depth, a, b)
        kl = _gradient_sums(tree, tokens, children, depth, a, b, gradient, k1, excess, total_a, totals)
        for term in terms:
            if term.name not in failed:
                try:
                    _term_sums(tree, term, sums.get(term.name), tokens, children, depth, a, b, gradient, kl, totals,
                               out)
                except SequenceUndecided as error:   # this term only: the others go on
                    failed[term.name] = str(error)
        return out

    block.totals, block.failed = totals, failed
    return block


def _gradient_sums(tree, tokens, children, depth, a, b, gradient, k1, excess, kl_coefficient, totals):
    """Add this chunk's squares and products of the expected gradients to ``totals``
    (``gradient``: the chunk's coefficient -> expected gradient map); returns grad KL's part."""

    future = _child(children, "MA")
    kl = gradient(kl_coefficient)   # k1 + KL to go
    _add(totals, "kl", kl.square())
    past = tree.past_k1[depth][a:b][:, None]
    terms = {"k2_loss": (k1, -future),
             "k3_loss": (-excess, -excess - kl_coefficient),
             "k1_reward": (past + kl_coefficient, past)}
    for name, (coefficient, difference) in terms.items():
        term = gradient(coefficient)
        _add(totals, name + ":norm", term.square())
        _add(totals, name + ":dot", term * kl)
        _add(totals, name + ":diff", gradient(difference).square())
    return kl


def _expected_gradient(tree, tokens, depth, a, b):
    """coefficient (n, V) -> the rows' expected gradient q(u) q(v|u) (C(u, v) - sum_w q(w|u) C(u, w))."""
    live, q = tokens.live, tokens.q
    weight = (tree.prefix_q[depth][a:b][:, None] * q).where(live)   # q(u) q(v|u)

    def gradient(coefficient):
        coefficient = coefficient.where(live)
        centred = (coefficient - (q * coefficient).sum()[:, None]).where(live)
        return weight * centred

    return gradient


def _term_sums(tree, term, sums, tokens, children, depth, a, b, gradient, kl, totals, out):
    """A term's expected gradient on this chunk, and its squares and products with the KL's."""
    live = tokens.live
    if isinstance(term, SampledCoefficients):
        # S(uv) = sum over the sequences through uv of q(y) c_t(y): G = S(uv) - q(v|u) sum_w S(uw)
        here = sums[depth][a * tree.vocabulary:b * tree.vocabulary].reshape(b - a, tree.vocabulary).where(live)
        term_gradient = (here - tokens.q * here.sum()[:, None]).where(live)
    else:
        coefficient = _ZERO
        if term.pathwise is not None:
            coefficient = coefficient + _token_ball(term.pathwise, tokens.t, live, term.name)
        if term.reward is not None:
            rewards = _token_ball(term.reward, tokens.t, live, term.name)
            to_go = (rewards + _child(children, "R:" + term.name)).where(live)
            out["R:" + term.name] = (tokens.q * to_go).where(live).sum()
            coefficient = coefficient + to_go * term.reward_scale
        term_gradient = gradient(coefficient)
    _add(totals, term.name + ":norm", term_gradient.square())
    _add(totals, term.name + ":dot", term_gradient * kl)
    _add(totals, term.name + ":diff", (term_gradient - kl).square())


def _token_ball(function, t: Ball, live, name) -> Ball:
    """``function`` (Ball -> Ball) at the live tokens (exact 0 elsewhere); a value without a
    finite bound there is a SequenceUndecided."""
    mid, rad = np.zeros(t.mid.shape), np.zeros(t.mid.shape)
    if np.any(live):
        values = function(t[live])
        if not (np.all(np.isfinite(values.mid)) and np.all(np.isfinite(values.rad))):
            raise SequenceUndecided(f"{name}: a coefficient leaves the float64 range (or has no finite bound)")
        mid[live], rad[live] = values.mid, values.rad
    return Ball(mid, rad)


def _sampled_sums(tree: Tree, term: SampledCoefficients) -> list:
    """Per depth d, the Ball (V^(d+1),) of S(uv) = sum over the sequences y through the
    prefix uv (|uv| = d + 1) of q(y) c_d(y), by bincount over the leaves.  A bin sums
    n = V^(T-d-1) products in some order: the bound is that of :meth:`Ball.sum`."""
    V, T = tree.vocabulary, tree.length
    leaf_q = Ball(np.empty(tree.sequences), np.empty(tree.sequences))
    sampled = np.empty(tree.sequences, dtype=bool)   # q(y) > 0, from the -inf patterns
    for a, b in tree.chunks(T - 1):
        tokens = tree.tokens(T - 1, a, b)
        ball = (tree.prefix_q[T - 1][a:b][:, None] * tokens.q).where(tokens.live)
        leaf_q.mid[a * V:b * V], leaf_q.rad[a * V:b * V] = ball.mid.ravel(), ball.rad.ravel()
        sampled[a * V:b * V] = tokens.live.ravel()
    if not (np.all(np.isfinite(term.mid[sampled])) and np.all(np.isfinite(term.rad[sampled]))):
        sequence, position = (int(i) for i in np.argwhere(~(np.isfinite(term.mid) & np.isfinite(term.rad))
                                                        & sampled[:, None])[0])
        raise SequenceUndecided(f"{term.name}: the gradient at sequence {sequence}, position {position} is not "
                                "finite (or has no finite bound)")
    sums = []
    index = np.arange(tree.sequences)
    for depth in range(T):
        per_bin = V ** (T - depth - 1)
        c = Ball(np.where(sampled, term.mid[:, depth], 0.0), np.where(sampled, term.rad[:, depth], 0.0))
        product = (leaf_q * c).where(sampled)
        bins = index // per_bin
        size = V ** (depth + 1)
        mid = np.bincount(bins, weights=product.mid, minlength=size)
        rad = (np.bincount(bins, weights=product.rad, minlength=size)
               + per_bin * EPS * np.bincount(bins, weights=np.abs(product.mid), minlength=size))
        sums.append(Ball(mid, _up(rad, terms=per_bin + 2)))
    return sums


def _add(totals, key, ball):
    """totals[key] += the exact-ish sum of ``ball``'s entries (math.fsum: correctly rounded)."""
    mid = math.fsum(ball.mid.ravel().tolist())
    rad = float(np.sum(ball.rad)) * (1 + 2 * (ball.mid.size + 4) * 2.0 ** -52) + 2.0 ** -52 * abs(mid)
    totals[key] = totals.get(key, _ZERO) + Ball(np.float64(mid), np.float64(rad))


def _estimator_moments(tree: Tree, function: TokenFunction) -> dict:
    """mc_mean, mc_variance, rb_mean, rb_variance of one estimator."""
    at_zero = 0.0
    if tree.kl_qp_infinite:
        at_zero = float(function.at_zero())
        if math.isnan(at_zero):
            raise SequenceUndecided(f"{function.name}: f(r) has no limit as r -> 0, where q samples a token p never "
                                    "takes")
        if math.isinf(at_zero):
            infinite, variance = Bounded(at_zero), Bounded(math.inf)
            return {"mc_mean": infinite, "mc_variance": variance, "rb_mean": infinite, "rb_variance": variance}

    def block(tokens, children, depth, a, b):
        live = tokens.live
        values = _token_values(function, tokens.t, live)
        if tree.kl_qp_infinite:  # r = 0 on a reachable row: f(0+), known to within its rounding
            zero = tokens.reach[:, None] & tokens.q_pos & ~tokens.p_pos
            values = values.where(~zero, Ball(np.float64(at_zero), np.float64(2.0 ** -52 * abs(at_zero))))
        mask = tokens.reach[:, None] & tokens.q_pos
        out = {}
        _, out["M"], out["S"] = _moments_step(tokens.q, values, mask, _child(children, "M"), _child(children, "S"))
        expected = (tokens.q * values).where(mask).sum()       # h(u)
        below = _child(children, "Mrb").where(mask)
        continuation = (tokens.q * below).sum()
        out["Mrb"] = expected + continuation
        spread = (below - continuation[:, None]).square()
        out["Srb"] = (tokens.q * (_child(children, "Srb") + spread)).where(mask).sum()
        return out

    root = _backward(tree, block)
    checked = {}
    for key, name in (("M", "mc_mean"), ("S", "mc_variance"), ("Mrb", "rb_mean"), ("Srb", "rb_variance")):
        ball = root[key]
        if not (np.isfinite(ball.mid) and np.isfinite(ball.rad)):
            raise SequenceUndecided(f"{function.name}: {name} leaves the float64 range")
        checked[name] = _nonnegative(ball) if name.endswith("variance") else Bounded(float(ball.mid), float(ball.rad))
    return checked


def _token_values(function, t: Ball, live) -> Ball:
    """f at the live tokens (exact 0 elsewhere), from the caller's evaluator."""
    mid, rad = np.zeros(t.mid.shape), np.zeros(t.mid.shape)
    if np.any(live):
        values, errors = function.evaluate(t.mid[live], t.rad[live])
        mid[live], rad[live] = values, errors
    return Ball(mid, rad)


# ----------------------------------------------------------------------------- the results


def _checked(ball: Ball, name, undecided) -> Bounded:
    if not (np.isfinite(ball.mid) and np.isfinite(ball.rad)):
        undecided[name] = f"{name} leaves the float64 range"
        return Bounded(None, None)
    return Bounded(float(ball.mid), float(ball.rad))


def _nonnegative(ball: Ball) -> Bounded:
    """A variance: the ball clipped to [0, ...) (the exact value is >= 0)."""
    with _precision():
        return _from_interval(_interval(ball), lower=0)


class _precision:
    """mpmath's interval context at _IV_PREC bits (it has no workprec of its own)."""

    def __enter__(self):
        self.saved, mpmath.iv.prec = mpmath.iv.prec, _IV_PREC

    def __exit__(self, *exc):
        mpmath.iv.prec = self.saved


def _interval(ball: Ball):
    """The ball as an mpmath interval (exact endpoints: float mid and rad, outward sums)."""
    mid, rad = mpmath.iv.mpf(float(ball.mid)), mpmath.iv.mpf(float(ball.rad))
    return mid + mpmath.iv.mpf([-1, 1]) * rad


def _clip(interval, lower=None, upper=None):
    low, high = (mpmath.mp.make_mpf(x) for x in interval._mpi_)
    if lower is not None:
        low, high = max(low, lower), max(high, lower)
    if upper is not None:
        low, high = min(low, upper), min(high, upper)
    return low, high


def _nonnegative_interval(interval):
    """The part of ``interval`` at or above 0 (where a variance or a squared norm lies)."""
    return mpmath.iv.mpf(list(_clip(interval, lower=0)))


def _lower(interval):
    return mpmath.mp.make_mpf(interval._mpi_[0])


def _upper(interval):
    return mpmath.mp.make_mpf(interval._mpi_[1])


def _from_interval(interval, lower=None, upper=None) -> Bounded:
    """(midpoint, half-width rounded up) of an mpmath interval, clipped to [lower, upper]
    (where the exact value is known to lie): float endpoints rounded outwards, the
    half-width computed in float64 and moved up one ulp (it is then >= the exact one)."""
    low, high = _clip(interval, lower, upper)
    low_f, high_f = float(low), float(high)
    if low_f > low:
        low_f = math.nextafter(low_f, -math.inf)
    if high_f < high:
        high_f = math.nextafter(high_f, math.inf)
    if low_f == high_f:
        return Bounded(low_f, 0.0)
    value = (low_f + high_f) / 2 if math.isfinite(low_f + high_f) else low_f / 2 + high_f / 2
    error = max(value - low_f, high_f - value)
    return Bounded(value, math.nextafter(error, math.inf))


def _control_variate(tree, root, undecided, notes) -> dict:
    keys = ("optimal_lambda", "variance_at_optimal", "variance_k1", "variance_k3")
    if tree.kl_qp_infinite:
        notes.append("q samples a token where p = 0 (r = 0): sum_t -log r_t is +inf there, so every lambda gives "
                     "infinite variance; the optimal lambda is undefined")
        return {"optimal_lambda": Bounded(None, None), **{k: Bounded(math.inf) for k in keys[1:]}}
    balls = [root[k] for k in ("SA", "SB", "C")]
    if not all(np.isfinite(b.mid) and np.isfinite(b.rad) for b in balls):
        undecided["control_variate"] = "the control variate's moments leave the float64 range"
        return {k: Bounded(None, None) for k in keys}
    with _precision():
        var_a, var_b, cov = (_interval(b) for b in balls)
        var_a = _nonnegative_interval(var_a)
        var_b = _nonnegative_interval(var_b)
        variance_k1 = _from_interval(var_a)
        variance_k3 = _from_interval(var_a + 2 * cov + var_b, lower=0)
        if _lower(var_b) <= 0:
            notes.append("Var(sum_t (r_t - 1)) is not bounded away from 0: the optimal lambda is undefined "
                         "(every lambda gives the variance of the k1 sum when it is 0)")
            return {"optimal_lambda": Bounded(None, None), "variance_at_optimal": variance_k1,
                    "variance_k1": variance_k1, "variance_k3": variance_k3}
        best = -cov / var_b
        optimal = _from_interval(best)
        chosen = mpmath.iv.mpf(optimal.value)
        at_chosen = var_a + 2 * chosen * cov + chosen * chosen * var_b
        # Var(lambda*) = Var(chosen) - Var B (chosen - lambda*)^2, with |chosen - lambda*| <= the bound
        offset = mpmath.iv.mpf([0, optimal.abs_error])
        at_optimal = mpmath.iv.mpf([_lower(at_chosen - var_b * offset * offset), _upper(at_chosen)])
        return {"optimal_lambda": optimal, "variance_at_optimal": _from_interval(at_optimal, lower=0),
                "variance_k1": variance_k1, "variance_k3": variance_k3}


def _gradients(tree, totals, names, undecided, notes) -> dict:
    """Cosine and relative error of each term against grad KL(q||p); ``names`` starts with
    the built-in terms (k1_loss first).  A term whose sums left float64 is undecided alone."""
    none = {"cosine_to_grad_kl_qp": Bounded(None, None), "relative_error": Bounded(None, None)}
    if tree.kl_qp_infinite:
        notes.append("KL(q||p) is infinite (q samples a token where p = 0): its gradient is undefined, so the "
                     "gradients are not compared")
        return {name: dict(none) for name in names}

    def finite(name):
        return all(np.isfinite(b.mid) and np.isfinite(b.rad) for key, b in totals.items()
                   if key == name or key.startswith(name + ":"))

    if not finite("kl"):
        undecided["gradients"] = "grad KL(q||p) leaves the float64 range"
        return {name: dict(none) for name in names}
    out = {}
    for name in names[1:]:
        if not finite(name):
            undecided[name] = f"{name}: its gradient leaves the float64 range"
            out[name] = dict(none)
    with _precision():
        norm_kl = _interval(totals["kl"])
        norm_kl = _nonnegative_interval(norm_kl)
        if _lower(norm_kl) <= 0:
            notes.append("grad KL(q||p) is not bounded away from 0: cosines and relative errors are undefined")
            return {name: dict(none) for name in names}
        # k1 as a loss: its score coefficient is the constant 1, and sum_v q(v) ([v = y] - q(v)) = 0
        # exactly, so its expected gradient is exactly the zero vector
        notes.append("k1_loss: the expected gradient is exactly the zero vector (the score has mean 0 under q), "
                     "so its cosine is undefined and its relative error is 1")
        out["k1_loss"] = {"cosine_to_grad_kl_qp": Bounded(None, None), "relative_error": Bounded(1.0, 0.0)}
        for name in names[1:]:
            if name in out:
                continue
            norm = _interval(totals[name + ":norm"])
            norm = _nonnegative_interval(norm)
            dot, diff = _interval(totals[name + ":dot"]), _interval(totals[name + ":diff"])
            diff = _nonnegative_interval(diff)
            relative = _from_interval(mpmath.iv.sqrt(diff / norm_kl), lower=0)
            if _lower(norm) <= 0:
                cosine = Bounded(None, None)
                notes.append(f"{name}: the expected gradient is not bounded away from the zero vector, so its "
                             "cosine is undefined")
            else:
                cosine = _from_interval(dot / mpmath.iv.sqrt(norm * norm_kl), lower=-1, upper=1)
            out[name] = {"cosine_to_grad_kl_qp": cosine, "relative_error": relative}
    return {name: out[name] for name in names}
