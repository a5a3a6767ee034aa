"""Floating-point claims of a bare torch function, with no formula: a library's own KL
term ``term(logp, ref_logp)`` judged against itself evaluated in float64.

For inputs logp, ref_logp exactly representable in the dtype (the function called on
(batch, sequence) tensors of that dtype, as a trainer calls it):

- ``fp_nonnegative``: the value is >= 0 (NaN fails; -0.0 passes);
- ``fp_finite``: the value is finite wherever the function's own float64 evaluation at
  the same inputs is finite and within the dtype's finite range;
- ``fp_agrees_float64``: the value is within ``ACCURATE_ULPS`` ulps of the dtype at the
  float64 value F, or within less than the dtype's smallest normal number of it; where
  |F| is beyond the dtype's finite range the value must be +-inf or +-max with F's sign
  (or within the budget of F: a function that returns a wider dtype may hold it); where
  F is NaN the value must be NaN.

What ``fp_agrees_float64`` can say: the function loses no more than a few ulps of the
dtype to computing in it, compared with the *same code* run on float64 tensors.  What it
cannot say: that either is close to the exact f.  The float64 evaluation is the
function's own: a wrong formula agrees with itself, and a function that casts to float32
inside (``.float()``) is compared with its float32 arithmetic (the verdict names the
dtype the float64 evaluation returned).  Claims about the exact f need an Estimator.

The value is whatever dtype the function returns (read exactly, bit for bit): a library
that upcasts (OpenRLHF's ``.float()``) is judged on what it returns, in the budget of
the input dtype.  float16 and bfloat16: every pair of the domain (read from
``tolerances.SWEEP_DOMAIN`` when the sweep starts), in chunks of whole rows reshaped to
(rows, values) tensors: ``proved`` or ``refuted`` with the number of failing pairs.
float32 and float64: the deterministic grid of ``grid.py`` and seeded random pairs, in
(rows, ``COLUMNS``) tensors: ``tested`` or ``refuted``.

Every counterexample is re-checked in the batch it was found in and alone (a (1, 1)
tensor); a sample of passing pairs is re-evaluated alone too.  Output that differs
between the two (compiled code, batch-size dependent kernels, or code that is not
deterministic) is a finding of its own, ``shape_dependence``.  The sweep runs torch on
one thread (restored after): cache-sized chunks on one thread were the fastest and the
steadiest on a busy machine.  Nothing here prints; torch through ``verify.core.frameworks``.
The domain is a parameter (``domain=``, finite) for a future ``--domain``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from verify.core.claims import PROVED, REFUTED, TESTED, UNDECIDED, Verdict
from verify.core.frameworks import require_torch, to_torch
from verify.layers.floating import tolerances
from verify.layers.floating.dtype_info import DTYPE_INFO, SIXTEEN_BIT
from verify.layers.floating.exhaustive import all_values
from verify.layers.floating.grid import grid_pairs
from verify.layers.floating.search import PROFILE_SIZES
from verify.strategies import numpy_dtype, round_to_dtype

BARE_CLAIMS = ("fp_nonnegative", "fp_finite", "fp_agrees_float64")
CHUNK_PAIRS = 1 << 17  # pairs per call: torch's per-call cost vanishes, and the temporaries stay in cache
COLUMNS = 1024  # the sequence axis of the float32/float64 batches
EXAMPLES_KEPT = 8  # failing pairs kept per claim (first in the sweep's order), re-checked
SHAPE_SAMPLES = 64  # passing pairs re-evaluated alone per dtype (one per chunk, spread)
SHAPE_FINDINGS_KEPT = 8  # pairs whose value depends on the batch shape, kept per dtype
RANDOM_PAIRS = {"dev": 20_000, "ci": 200_000, "thorough": 2_000_000}  # float32/float64
SEED = 20250521  # the random pairs' seed: the same pairs on every run


@dataclass
class _Found:
    """What a sweep found in one dtype: counts, the first failing pairs, the sample."""

    pairs: int = 0
    failures: dict = field(default_factory=dict)  # claim -> count
    examples: dict = field(default_factory=dict)  # claim -> [(chunk key, flat index)]
    samples: list = field(default_factory=list)  # (chunk key, flat index, value, float64 value)
    returns: str | None = None  # the dtype the function returned
    float64_returns: str | None = None  # the dtype its float64 evaluation returned
    float64_nan: int = 0  # pairs where the float64 evaluation is NaN


class FunctionFailed(Exception):
    """The function raised, or returned something that is not one value per pair."""


@dataclass(frozen=True)
class FunctionVerdicts:
    """The verdicts of one dtype ({claim: Verdict}), what the function returned, and
    the pairs whose value depends on the batch shape (``shape_dependence``)."""

    dtype: str
    verdicts: dict
    returns: str | None = None
    shape_dependence: tuple = ()
    float64_returns: str | None = None  # the dtype the float64 evaluation returned
    shape_checked: int = 0  # pairs re-evaluated alone
    shape_differs: int = 0  # of which the value (or the float64 value) differs from the batch's


# --------------------------------------------------------------------- the pairs

class _Rows:
    """Every pair of a 16-bit dtype in ``domain``: chunk k holds whole rows (one log q per
    row, every log p along the row), so a pair's place says its inputs."""

    def __init__(self, dtype, domain):
        np_dtype = numpy_dtype(dtype)
        self.values = all_values(np_dtype, domain)
        self.n = len(self.values)
        self.tensor = to_torch(self.values.astype(np_dtype))
        self.rows = max(1, CHUNK_PAIRS // max(self.n, 1))
        self.keys = list(range(0, self.n, self.rows))
        self.describe = (f"all {self.n * self.n:,} (logp, ref_logp) pairs of {dtype} in [{domain[0]:g}, {domain[1]:g}] "
                         f"({self.n:,} values each, -0.0 included)")

    def chunk(self, start):
        stop = min(self.n, start + self.rows)
        logp = self.tensor.expand(stop - start, self.n).clone()
        logq = self.tensor[start:stop].unsqueeze(1).expand(stop - start, self.n).clone()
        return logp, logq

    def pair(self, start, index):
        return float(self.values[index % self.n]), float(self.values[start + index // self.n])

    def valid(self, start):
        return (min(self.n, start + self.rows) - start) * self.n

    def shape(self, start):
        return (min(self.n, start + self.rows) - start, self.n)


class _Listed:
    """Given pairs (float64 arrays, representable in the dtype), in (rows, COLUMNS)
    batches, the last one padded with its own last pair."""

    def __init__(self, dtype, logp, logq, describe):
        self.np_dtype = numpy_dtype(dtype)
        self.logp, self.logq, self.describe = logp, logq, describe
        self.size = max(COLUMNS, CHUNK_PAIRS // COLUMNS * COLUMNS)
        self.keys = list(range(0, len(logp), self.size))

    def chunk(self, start):
        stop = min(len(self.logp), start + self.size)
        padded = -(-(stop - start) // COLUMNS) * COLUMNS
        index = np.minimum(np.arange(start, start + padded), stop - 1)
        shape = (padded // COLUMNS, COLUMNS)
        return tuple(to_torch(a[index].astype(self.np_dtype).reshape(shape)) for a in (self.logp, self.logq))

    def pair(self, start, index):
        return float(self.logp[start + index]), float(self.logq[start + index])

    def valid(self, start):
        return min(len(self.logp), start + self.size) - start

    def shape(self, start):
        return (-(-self.valid(start) // COLUMNS), COLUMNS)


def random_pairs(dtype, domain, count, seed=SEED):
    """``count`` seeded pairs in ``domain``, rounded to the dtype: a third uniform, a third
    log-uniform magnitudes, a third near log p = log q (|log r| log-uniform in [1e-8, 1])."""
    rng = np.random.default_rng(seed)
    low, high = domain
    third = count // 3
    smallest, largest = max(-high, 1e-8), max(-low, 1e-8)
    magnitude = lambda k: -np.exp(rng.uniform(math.log(smallest), math.log(largest), k))  # noqa: E731
    logq_near = rng.uniform(low, high, count - 2 * third)
    logp = np.concatenate([rng.uniform(low, high, third), magnitude(third),
                           logq_near + rng.choice([-1.0, 1.0], len(logq_near)) * np.exp(
                               rng.uniform(math.log(1e-8), 0.0, len(logq_near)))])
    logq = np.concatenate([rng.uniform(low, high, third), magnitude(third), logq_near])
    pairs = [np.clip(round_to_dtype(np.clip(a, low, high), dtype).astype(np.float64), low, high)
             for a in (logp, logq)]
    return pairs[0], pairs[1]


def _pairs(dtype, domain, profile):
    if dtype in SIXTEEN_BIT:
        return _Rows(dtype, domain)
    families = grid_pairs(DTYPE_INFO[dtype], PROFILE_SIZES[profile])
    logp = np.concatenate([p for p, _ in families.values()])
    logq = np.concatenate([q for _, q in families.values()])
    inside = (logp >= domain[0]) & (logp <= domain[1]) & (logq >= domain[0]) & (logq <= domain[1])
    grid = int(np.count_nonzero(inside))
    more_p, more_q = random_pairs(dtype, domain, RANDOM_PAIRS[profile])
    return _Listed(dtype, np.concatenate([logp[inside], more_p]), np.concatenate([logq[inside], more_q]),
                   f"{grid + len(more_p):,} pairs in [{domain[0]:g}, {domain[1]:g}]: the grid of {grid:,} "
                   f"(grid.py, profile {profile}) and {len(more_p):,} random pairs (seed {SEED})")


# ------------------------------------------------------------------ evaluating

def _call(term, logp, logq):
    """The function's values on one batch as a float64 NumPy array (exact), and the
    dtype it returned; FunctionFailed if it raises or returns the wrong shape."""
    torch = require_torch()
    try:
        with torch.inference_mode():
            out = term(logp, logq)
    except Exception as error:  # noqa: BLE001 - the function's failure is a finding
        raise FunctionFailed(f"the function raised {type(error).__name__}: {error}"[:300]) from None
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        kind = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else type(out).__name__
        raise FunctionFailed(f"the function returned {kind}; a KL term returns a floating-point tensor")
    if tuple(out.shape) != tuple(logp.shape):
        raise FunctionFailed(f"the function returned shape {tuple(out.shape)} for inputs of shape "
                             f"{tuple(logp.shape)}: a per-token term returns one value per (logp, ref_logp) pair")
    return out.detach().to(torch.float64).cpu().contiguous().numpy().reshape(-1), str(out.dtype).replace("torch.", "")


def _evaluate(term, logp, logq):
    """(values in the dtype, values of the float64 evaluation, their dtypes) of one batch."""
    torch = require_torch()
    logp64, logq64 = logp.to(torch.float64), logq.to(torch.float64)  # copies, before any call can write
    value, returns = _call(term, logp, logq)
    try:
        reference, reference_returns = _call(term, logp64, logq64)
    except FunctionFailed as failed:
        raise FunctionFailed(f"in its float64 evaluation, {failed}") from None
    return value, reference, returns, reference_returns


def _alone(term, dtype, logp, logq):
    """(value, float64 value) of the function called on the one pair, as (1, 1) tensors."""
    np_dtype = numpy_dtype(dtype)
    one = [to_torch(np.array([[x]]).astype(np_dtype)) for x in (logp, logq)]
    value, reference, _, _ = _evaluate(term, *one)
    return float(value[0]), float(reference[0])


# ------------------------------------------------------------------- judging

class _Judge:
    """The three claims of one dtype, vectorised, each failure decided exactly."""

    def __init__(self, dtype, accurate_ulps):
        info = DTYPE_INFO[dtype]
        self.info, self.ulps = info, float(accurate_ulps)
        self.max_finite, self.smallest_normal = info.max_finite, float(info.smallest_normal)
        # within ulps * 2^-p |F| is within the budget (the ulp at F is at least 2^-p |F|)
        self.relative = self.ulps * 2.0 ** -info.precision

    def failing(self, value, reference):
        """{claim: failing flat indices, in order} for one batch."""
        with np.errstate(all="ignore"):
            negative = np.flatnonzero(~(value >= 0))
            error = np.abs(value - reference)
            quick = error <= self.relative * np.abs(reference)
            quick |= error < self.smallest_normal
            rest = np.flatnonzero(~quick)
        finite, agrees = self.exactly(value[rest], reference[rest])
        return {"fp_nonnegative": negative, "fp_finite": rest[~finite], "fp_agrees_float64": rest[~agrees]}

    def exactly(self, value, reference):
        """(fp_finite holds, fp_agrees_float64 holds) at each pair, exactly."""
        with np.errstate(all="ignore"):
            nan = np.isnan(reference)
            in_range = np.abs(reference) <= self.max_finite
            finite = ~in_range | np.isfinite(value)
            _, exponent = np.frexp(reference)
            exponent = np.where(reference == 0, self.info.min_exponent, np.maximum(exponent - 1,
                                                                                    self.info.min_exponent))
            budget = np.ldexp(self.ulps, exponent - self.info.precision + 1)
            error = np.abs(value - reference)
            within = (error < budget) | (error < self.smallest_normal)
            # float64 rounding is monotone: only an error that rounded onto a bound is unclear
            for i in np.flatnonzero(~within & ((error == budget) | (error == self.smallest_normal))):
                exact = abs(Fraction(float(value[i])) - Fraction(float(reference[i])))
                within[i] = exact <= Fraction(float(budget[i])) or exact < Fraction(self.smallest_normal)
            sign = np.sign(reference)
            saturated = (value == sign * math.inf) | (value == sign * self.max_finite)
            agrees = np.where(nan, np.isnan(value), within | (~in_range & saturated))
        return finite, agrees

    def fails(self, claim, value, reference) -> bool:
        """Whether one pair fails ``claim``."""
        found = self.failing(np.array([value]), np.array([reference]))
        return len(found[claim]) > 0


# -------------------------------------------------------------------- the sweep

def sweep_function(term, dtype: str, *, claims=BARE_CLAIMS, profile: str = "ci", domain=None,
                   accurate_ulps: float | None = None, progress=None) -> FunctionVerdicts:
    """The verdicts of ``claims`` (base names of ``BARE_CLAIMS``) of ``term(logp,
    ref_logp)`` (torch tensors of ``dtype`` in, a tensor of their shape out) in one dtype.
    ``domain``: (low, high) of the log-probs (None: ``tolerances.SWEEP_DOMAIN`` for the
    16-bit dtypes, ``tolerances.DOMAIN`` otherwise).  ``progress(pairs)`` after each chunk."""
    require_torch()
    claims = tuple(dict.fromkeys(claims))
    for claim in claims:
        if claim not in BARE_CLAIMS:
            raise ValueError(f"{claim!r} is not a claim of a bare function ({', '.join(BARE_CLAIMS)})")
    if domain is None:
        domain = tolerances.SWEEP_DOMAIN if dtype in SIXTEEN_BIT else tolerances.DOMAIN
    domain = (float(domain[0]), float(domain[1]))
    if not (math.isfinite(domain[0]) and math.isfinite(domain[1]) and domain[0] <= domain[1]):
        raise ValueError(f"a bare function is swept over a finite domain LO <= HI, not {domain}")
    judge = _Judge(dtype, tolerances.ACCURATE_ULPS if accurate_ulps is None else accurate_ulps)
    torch = require_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # chunks that fit in cache, one thread: faster, and steady on a busy machine
    try:
        source = _pairs(dtype, domain, profile)
        found = _sweep(term, source, judge, claims, progress)
        return _verdicts(term, dtype, source, judge, claims, found)
    except FunctionFailed as failed:
        return FunctionVerdicts(dtype, {c: Verdict(UNDECIDED, "the function failed", str(failed)) for c in claims})
    finally:
        torch.set_num_threads(threads)


def _sweep(term, source, judge, claims, progress):
    found = _Found()
    spread = max(1, len(source.keys) // SHAPE_SAMPLES)
    for number, key in enumerate(source.keys):
        logp, logq = source.chunk(key)
        value, reference, found.returns, found.float64_returns = _evaluate(term, logp, logq)
        valid = source.valid(key)
        value, reference = value[:valid], reference[:valid]
        found.pairs += valid
        found.float64_nan += int(np.count_nonzero(np.isnan(reference)))
        failing = judge.failing(value, reference)
        for claim in claims:
            index = failing[claim]
            if len(index):
                found.failures[claim] = found.failures.get(claim, 0) + len(index)
                kept = found.examples.setdefault(claim, [])
                kept += [(key, int(i)) for i in index[:EXAMPLES_KEPT - len(kept)]]
        if number % spread == 0 and len(found.samples) < SHAPE_SAMPLES:
            at = (number * 7919 + 104729) % valid  # a fixed place in each sampled chunk
            found.samples.append((key, at, float(value[at]), float(reference[at])))
        if progress is not None:
            progress(found.pairs)
    return found


def _same(a, b) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _number(x):
    return x if math.isfinite(x) else repr(x)


def _verdicts(term, dtype, source, judge, claims, found):
    shape, checked = {}, set()
    batches = {}  # chunk key -> (value, float64 value) re-evaluated: the re-check in the batch

    def batch(key):
        if key not in batches:
            logp, logq = source.chunk(key)
            value, reference, _, _ = _evaluate(term, logp, logq)
            batches[key] = (value, reference, source.shape(key))
        return batches[key]

    def finding(logp, logq, where, in_batch, alone, evaluated):
        entry = {"logp": logp, "ref_logp": logq, "dtype": dtype, "evaluated_in": evaluated, "batch_shape": list(where),
                 "in_batch": _number(float(in_batch)), "alone": _number(float(alone))}
        shape.setdefault((logp, logq), entry)

    def compare(logp, logq, where, value, reference):
        checked.add((logp, logq))
        alone_value, alone_reference = _alone(term, dtype, logp, logq)
        if not _same(value, alone_value):
            finding(logp, logq, where, value, alone_value, dtype)
        elif not _same(reference, alone_reference):
            finding(logp, logq, where, reference, alone_reference, "float64")
        return alone_value, alone_reference

    verdicts = {}
    method = "exhaustive enumeration" if dtype in SIXTEEN_BIT else "grid + random pairs"
    note = f"the function returns {found.returns}"
    if found.float64_returns != "float64":
        note += (f"; its float64 evaluation returned {found.float64_returns}, so fp_agrees_float64 compares with "
                 f"{found.float64_returns} arithmetic")
    if found.float64_nan:
        note += f"; the float64 evaluation is NaN at {found.float64_nan:,} pair(s)"
    where = f"{source.describe}; {note}"
    for claim in claims:
        failing = found.failures.get(claim, 0)
        if not failing:
            verdicts[claim] = Verdict(PROVED if dtype in SIXTEEN_BIT else TESTED, method, f"no failure: {where}")
            continue
        example = None
        for key, index in found.examples[claim]:
            value, reference, batch_shape = batch(key)
            logp, logq = source.pair(key, index)
            alone_value, alone_reference = compare(logp, logq, batch_shape, value[index], reference[index])
            if example is None and judge.fails(claim, value[index], reference[index]):
                example = {"logp": logp, "ref_logp": logq, "dtype": dtype, "value": _number(float(value[index])),
                           "float64": _number(float(reference[index])), "batch_shape": list(batch_shape),
                           "position": [index // batch_shape[1], index % batch_shape[1]],
                           "alone": {"value": _number(alone_value), "float64": _number(alone_reference),
                                     "fails": judge.fails(claim, alone_value, alone_reference)}}
        count = f"{failing:,} of {found.pairs:,} pairs fail"
        if example is None:
            verdicts[claim] = Verdict(UNDECIDED, "failures did not re-check in their batch",
                                      f"{count} in their batch; none fails again when its batch is re-evaluated "
                                      f"(the function is not deterministic?); {where}")
        else:
            verdicts[claim] = Verdict(REFUTED, method, f"{count}; {where}", example)
    for key, index, value, reference in found.samples:
        logp, logq = source.pair(key, index)
        compare(logp, logq, source.shape(key), value, reference)
    return FunctionVerdicts(dtype, verdicts, found.returns, tuple(shape.values())[:SHAPE_FINDINGS_KEPT],
                            found.float64_returns, len(checked), len(shape))
