"""Calling a user's torch term as a trainer does, and what the calls reveal about it.

Layout: a term receives (batch, sequence) tensors.  The enumerated vocabulary is laid on
the batch axis and the positions on the sequence axis: a tensor of shape (V, T) whose
element (x, t) is token x at position t (the built-in pairs are sequences of length 1).
So a term that reduces over the sequence axis (a sequence-level weight) reduces over
positions, never over the vocabulary, as in training.

Two findings come from extra calls on probes of shape (V, 2), on-policy:

- **mixing** (:func:`mixed_axes`): the value or the per-token gradient at one element
  changes when only *other* elements change: other positions of the same row (a
  sequence-level weight, a mean over the sequence) or other rows (a batch
  normalisation).  Such a term is not a per-token function: its rows hold for the
  layout of the check only, and the report says so.
- **precision** (:func:`detected_precision`): the values of a float64 call are all
  numbers of a narrower dtype (a cast to float32 inside, then a float64 weight): the
  term computes in that dtype, whatever it returns, and the error bound is that dtype's.
"""
from __future__ import annotations

import numpy as np

from verify.errors import UsageError

# dtypes a term may compute in, narrowest first: (name, significant bits, smallest normal,
# largest finite); a value is "of" the dtype when rounding it there changes nothing
PRECISIONS = (("bfloat16", 8, 2.0 ** -126, 3.3895313892515355e38),
              ("float16", 11, 2.0 ** -14, 65504.0),
              ("float32", 24, 2.0 ** -126, 3.4028234663852886e38))
EPS = {"bfloat16": 2.0 ** -7, "float16": 2.0 ** -10, "float32": 2.0 ** -23, "float64": 2.0 ** -52}
# A float64 result is of a narrower dtype by chance with probability 2^-29 (float32) per
# value; values with at most TRIVIAL_BITS significant bits (0, 1, 0.5, small integers)
# are of every dtype and say nothing.  Detection needs MIN_EVIDENCE values that do.
TRIVIAL_BITS = 4
MIN_EVIDENCE = 2


def _round_to_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` rounded to ``bits`` significant bits (round half to even, by frexp)."""
    mantissa, exponent = np.frexp(values)
    return np.ldexp(np.round(np.ldexp(mantissa, bits)), exponent - bits)


def detected_precision(values: np.ndarray, returned: str) -> str:
    """The narrowest dtype whose numbers are all the finite values of one call that
    returned ``returned`` (``float64`` or ``float32``), or ``returned`` itself when the
    values cannot tell (fewer than MIN_EVIDENCE values with more than TRIVIAL_BITS bits)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values) & (values != 0)]
    evidence = values[_round_to_bits(values, TRIVIAL_BITS) != values]
    if evidence.size < MIN_EVIDENCE:
        return returned
    for name, bits, smallest_normal, largest in PRECISIONS:
        if EPS[name] <= EPS[returned]:
            break
        magnitude = np.abs(evidence)
        if np.all((_round_to_bits(evidence, bits) == evidence) & (magnitude >= smallest_normal)
                  & (magnitude <= largest)):
            return name
    return returned


def as_batch_sequence(torch, array: np.ndarray, dtype):
    """A (T, V) float64 array as the (V, T) tensor a term receives (batch = tokens)."""
    return torch.tensor(np.ascontiguousarray(np.asarray(array).T), dtype=dtype)


def call_value(torch, func, logp, ref, old, kind: str = "token"):
    """The term's value at tensors of one shape, with its shape checked: one value per
    token of (batch, sequence) log-probs, or per position of (batch, sequence,
    vocabulary) ones for a full-vocabulary term (``kind="full"``)."""
    try:
        value = func(logp, ref, old)
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's code failing is bad input, said in one line
        raise UsageError(f"the term raised {type(error).__name__}: {error}"[:300]) from None
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"the term must return a torch tensor, got {type(value).__name__}")
    if kind == "token" and tuple(value.shape) != tuple(logp.shape):
        raise UsageError(f"the term must return one value per token: (batch, sequence) = {tuple(logp.shape)} in, "
                         f"{tuple(value.shape)} out")
    if kind == "full" and tuple(value.shape) != tuple(logp.shape[:-1]):
        raise UsageError(f"--kind full: the term must return one value per position: (batch, sequence, "
                         f"vocabulary) = {tuple(logp.shape)} in, {tuple(value.shape)} out")
    return value


def returned_dtype(torch, value, given) -> str:
    """``float64`` or ``float32``, the dtype the term returned for ``given`` inputs; a
    narrower one is refused (the expected gradient is computed in float64)."""
    if value.dtype not in (torch.float64, torch.float32):
        raise UsageError(f"the term returned {value.dtype} for {given} inputs: the expected gradient is computed "
                         "in float64, so the term must compute in float64 or float32 here")
    return "float64" if value.dtype == torch.float64 else "float32"


def _probe(torch, func, logq, ref):
    """(values, per-token gradient of their sum, returned dtype) at (V, 2) float64 probes,
    on-policy."""
    leaf = torch.tensor(logq, dtype=torch.float64).requires_grad_(True)
    ref_t = torch.tensor(ref, dtype=torch.float64)
    with torch.enable_grad():
        value = call_value(torch, func, leaf, ref_t, leaf.detach())
        returned = returned_dtype(torch, value, torch.float64)
        values = value.detach().to(torch.float64).numpy().copy()
        gradient = np.zeros_like(values)
        if value.requires_grad:
            (found,) = torch.autograd.grad(value.to(torch.float64).sum(), leaf, allow_unused=True)
            if found is not None:
                gradient = found.detach().to(torch.float64).numpy().copy()
    return values, gradient, returned


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal, NaN included (an elementwise term computes each element the same way)."""
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# How a probe changes the entries it changes: (log q, ref) -> new (log q, ref).  A shuffle
# (other values), then log r = ref - log q moved far up and far down: a reduction that
# picks one entry (a max, a min, the first row) moves under one of them.
_CHANGES = (lambda q, r, rolled_q, rolled_r: (rolled_q - 0.25, rolled_r + 0.25),
            lambda q, r, rolled_q, rolled_r: (q, r - 4.0),
            lambda q, r, rolled_q, rolled_r: (q - 4.0, r))


def probe_term(torch, func, logq_row: np.ndarray, ref_row: np.ndarray) -> tuple[tuple[str, ...], str]:
    """(the axes the term mixes: ``"positions"``, ``"batch rows"``; the precision it
    computes in, on-policy), from probes built of one position's log-probs (V values): a
    base of two positions, then the same with the second position changed, then with the
    odd rows changed, then the even ones, each in the three ways of ``_CHANGES``; the
    unchanged entries must keep their values and gradients.  On-policy its weights are 1,
    so a narrower dtype inside shows in the values (off-policy a float64 weight hides it)."""
    size = len(logq_row)
    base_q = np.stack([logq_row, np.roll(logq_row, 1)], axis=1)
    base_r = np.stack([ref_row, np.roll(ref_row, 1)], axis=1)
    values, gradient, returned = _probe(torch, func, base_q, base_r)

    def moves(changed, rolled_q, rolled_r):
        """Does an entry outside ``changed`` (a boolean mask of base's shape) move?"""
        for change in _CHANGES:
            other_q, other_r = base_q.copy(), base_r.copy()
            new_q, new_r = change(base_q, base_r, rolled_q, rolled_r)
            other_q[changed], other_r[changed] = new_q[changed], new_r[changed]
            moved_values, moved_gradient, _ = _probe(torch, func, other_q, other_r)
            kept = ~changed
            if not (_same(values[kept], moved_values[kept]) and _same(gradient[kept], moved_gradient[kept])):
                return True
        return False

    mixed = []
    second = np.zeros(base_q.shape, dtype=bool)
    second[:, 1] = True
    shuffled_q = np.stack([logq_row, np.roll(logq_row, 2)], axis=1)
    shuffled_r = np.stack([ref_row, np.roll(ref_row, 3)], axis=1)
    if moves(second, shuffled_q + 0.25, shuffled_r - 0.25):   # other positions of the same rows
        mixed.append("positions")
    if size >= 2:
        rows = np.arange(size)[:, None] % 2 == np.zeros(base_q.shape, dtype=int)
        rolled_q, rolled_r = np.roll(base_q, 1, axis=0), np.roll(base_r, 1, axis=0)
        if moves(~rows, rolled_q, rolled_r) or moves(rows, rolled_q, rolled_r):   # other rows
            mixed.append("batch rows")
    return tuple(mixed), detected_precision(values, returned)


def mixing_note(mixed: tuple[str, ...], positions: int) -> str:
    """The report's note on a term that mixes axes ("" when it does not)."""
    if not mixed:
        return ""
    layout = ("each pair is one sequence of length 1" if positions == 1 else
              f"the {positions} positions of the given logits form the sequence axis")
    return (f"the term mixes {' and '.join(mixed)}: its value or gradient at one token depends on the log-probs "
            f"of other tokens (a sequence-level weight, a batch normalisation), so it is not a per-token function; "
            f"these rows hold for the layout of this check (the vocabulary enumerated on the batch axis, {layout})")


def input_rounding_bound(pi, logq, ref, old, values, g):
    """Per-token bound on what a term computing in a narrower dtype loses to its own
    rounding (inputs rounded to it, each operation's result rounded in it), in units of
    that dtype's eps: (1 + |logq| + |ref| + |old|) (pi (1 + |value|) + |g|), every
    operand of such a term being at most the size of its inputs, its value and its
    derivative."""
    old = logq if old is None else old
    size = 1.0 + np.abs(logq) + np.abs(ref) + np.abs(old)
    with np.errstate(invalid="ignore", over="ignore"):
        return size * (pi * (1.0 + np.abs(values)) + np.abs(g))
