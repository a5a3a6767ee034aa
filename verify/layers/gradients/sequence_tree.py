"""The prefix tree of a tabular autoregressive model: its table layout, the log-softmax of
each row as a :class:`~verify.layers.gradients.balls.Ball`, and the forward pass
(which prefixes are reachable, their probabilities and their summed k1).

Layout (issue 22): one row of V logits per prefix, the empty prefix first, then the
prefixes of length 1, ..., T-1, each length in lexicographic order; the row of
(y_1..y_k) is (V^k - 1)/(V - 1) + the base-V number y_1..y_k.  So the rows of depth k
are a contiguous block, and the children of local row i of depth k are the local rows
i V + v of depth k + 1: a depth's (n, V) arrays, flattened, are indexed like the next
depth's rows.  This is what makes the recursions of ``sequence_models`` vectorised per depth.

A -inf logit is an impossible token (probability exactly 0).  Reachability is decided
on these masks, never on rounded probabilities (a probability that underflows to 0 is
still positive): a prefix is q-reachable when every token on it has a finite q logit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from verify.errors import UsageError
from verify.layers.gradients.balls import Ball, exact

__all__ = ["MAX_SEQUENCES", "CHUNK_ENTRIES", "Tokens", "Tree", "tree_length", "forward"]

# V^T above this is refused: the recursions hold about ten float64 arrays of V^(T-1)
# entries (plus the tables themselves), a few hundred MB at this size.
MAX_SEQUENCES = 4_194_304
# entries (rows x V) per chunk of a depth: bounds the temporaries of one step
CHUNK_ENTRIES = 1 << 17
# the token data of every chunk is kept between passes when the tables are this small
CACHE_ENTRIES = 1 << 20


def tree_length(rows: int, vocabulary: int) -> int:
    """T such that rows = 1 + V + ... + V^(T-1), or UsageError."""
    if vocabulary < 2:
        raise UsageError(f"the vocabulary must have at least 2 tokens (the tables have {vocabulary} columns)")
    total, length, level = 0, 0, 1
    while total < rows:
        total += level
        level *= vocabulary
        length += 1
    if total != rows:
        raise UsageError(f"a table of {rows} rows of {vocabulary} logits is not 1 + V + ... + V^(T-1) rows "
                         f"for V = {vocabulary} (one row per prefix of length 0..T-1)")
    return length


@dataclass
class Tokens:
    """One chunk of rows [a, b) of depth k: the next-token distributions as balls.
    ``live``: q > 0 and p > 0 on a q-reachable row (only there are t and q meaningful and
    non-zero; everything else is exactly 0)."""

    reach: np.ndarray      # (n,) the row is q-reachable
    reach_p: np.ndarray    # (n,) the row is p-reachable
    q_pos: np.ndarray      # (n, V) q(v|u) > 0
    p_pos: np.ndarray      # (n, V) p(v|u) > 0
    q: Ball                # q(v|u), 0 where not q_pos or on an unreachable row
    p: Ball                # p(v|u), 0 where not p_pos or on a p-unreachable row
    t: Ball                # log r = log p - log q where live, else 0
    live: np.ndarray       # (n, V)


@dataclass
class Tree:
    """The two tables and the per-depth results of the forward pass."""

    p_logits: np.ndarray
    q_logits: np.ndarray
    vocabulary: int
    length: int
    reach: list = field(default_factory=list)      # per depth: (V^k,) bool, q-reachable
    reach_p: list = field(default_factory=list)    # per depth: (V^k,) bool, p-reachable
    prefix_q: list = field(default_factory=list)   # per depth: Ball (V^k,), q(prefix)
    past_k1: list = field(default_factory=list)    # per depth: Ball (V^k,), sum of k1 on the prefix
    kl_qp_infinite: bool = False   # a q-reachable token has q > 0 = p (r = 0)
    kl_pq_infinite: bool = False   # a p-reachable token has p > 0 = q
    _cache: dict = field(default_factory=dict)

    @property
    def sequences(self) -> int:
        return self.vocabulary ** self.length

    def offset(self, depth: int) -> int:
        return (self.vocabulary ** depth - 1) // (self.vocabulary - 1)

    def chunks(self, depth: int):
        """(a, b): the rows of ``depth`` in chunks of about CHUNK_ENTRIES entries."""
        n = self.vocabulary ** depth
        step = max(1, CHUNK_ENTRIES // self.vocabulary)
        for a in range(0, n, step):
            yield a, min(n, a + step)

    def tokens(self, depth: int, a: int, b: int) -> Tokens:
        key = (depth, a)
        found = self._cache.get(key)
        if found is not None:
            return found
        found = self._tokens(depth, a, b)
        if self.p_logits.size <= CACHE_ENTRIES:
            self._cache[key] = found
        return found

    def _tokens(self, depth, a, b) -> Tokens:
        rows = slice(self.offset(depth) + a, self.offset(depth) + b)
        reach, reach_p = self.reach[depth][a:b], self.reach_p[depth][a:b]
        log_q, q_pos = _log_softmax(self.q_logits[rows])
        log_p, p_pos = _log_softmax(self.p_logits[rows])
        live = reach[:, None] & q_pos & p_pos
        with np.errstate(all="ignore"):
            q = log_q.exp().where(reach[:, None] & q_pos)
            p = log_p.exp().where(reach_p[:, None] & p_pos)
            t = (log_p - log_q).where(live)
        return Tokens(reach, reach_p, q_pos, p_pos, q, p, t, live)


def _log_softmax(logits):
    """(log-softmax of each row as a Ball, finite mask); entries at -inf logits are 0.
    The logits are exact (the user's float64 numbers); each row has a finite entry, so
    the row maximum is finite and the sum of exponentials is >= 1 (no log of 0)."""
    finite = np.isfinite(logits)
    with np.errstate(all="ignore"):
        top = np.max(np.where(finite, logits, -np.inf), axis=1, keepdims=True)
        shifted = (exact(np.where(finite, logits, top)) - exact(top)).where(finite)
        weights = shifted.exp().where(finite)
        log_total = weights.sum(axis=1).log()
        log_softmax = (shifted - log_total[:, None]).where(finite)
    return log_softmax, finite


def forward(tree: Tree) -> Tree:
    """Fill the forward quantities of ``tree`` (reachability under q and p, q(prefix) and
    the prefix's summed k1 = sum of log q - log p) and decide the infinite KLs exactly."""
    V = tree.vocabulary
    tree.reach, tree.reach_p = [np.ones(1, dtype=bool)], [np.ones(1, dtype=bool)]
    tree.prefix_q, tree.past_k1 = [exact(np.ones(1))], [exact(np.zeros(1))]
    for depth in range(tree.length):
        n = V ** depth
        last = depth == tree.length - 1
        if not last:
            reach, reach_p = np.empty(n * V, dtype=bool), np.empty(n * V, dtype=bool)
            prefix = (np.empty(n * V), np.empty(n * V))
            past = (np.empty(n * V), np.empty(n * V))
        for a, b in tree.chunks(depth):
            rows = slice(tree.offset(depth) + a, tree.offset(depth) + b)
            q_pos, p_pos = np.isfinite(tree.q_logits[rows]), np.isfinite(tree.p_logits[rows])
            here, here_p = tree.reach[depth][a:b, None], tree.reach_p[depth][a:b, None]
            tree.kl_qp_infinite |= bool(np.any(here & q_pos & ~p_pos))
            tree.kl_pq_infinite |= bool(np.any(here_p & p_pos & ~q_pos))
            if last:
                continue
            out = slice(a * V, b * V)
            reach[out] = (here & q_pos).ravel()
            reach_p[out] = (here_p & p_pos).ravel()
            if not tree.kl_qp_infinite:  # q(prefix) and the past k1 serve the gradients only
                tokens = tree.tokens(depth, a, b)
                child_q = tree.prefix_q[depth][a:b][:, None] * tokens.q
                child_past = (tree.past_k1[depth][a:b][:, None] - tokens.t).where(tokens.live)
                for store, ball in ((prefix, child_q), (past, child_past)):
                    store[0][out], store[1][out] = ball.mid.ravel(), ball.rad.ravel()
        if not last:
            tree.reach.append(reach)
            tree.reach_p.append(reach_p)
            tree.prefix_q.append(Ball(*prefix))
            tree.past_k1.append(Ball(*past))
    return tree
