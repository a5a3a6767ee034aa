"""Every (logp, logq) pair of a 16-bit dtype in the domain, both backward claims at once.

The structure of the value sweep (``exhaustive.py``): rows of one log q against every
log p, the gradient called on several whole rows at a time (one autograd call: the
terms are elementwise), the decision vectorised over a row, blocks of rows in forked
workers where that is safe (not once torch is loaded: ``sixteen_bit.sweep_processes``),
the parts added up in row order (``tally.py``: counts, worst-first examples).

The exact gradient -g'(t) of every pair is enclosed in float64 (``derivative_enclosure``,
with the Taylor model ``exact_gradient.derivative_taylor`` near t = 0, through
``vectorised._enclose``); ``decide`` settles a pair for a claim when the whole enclosure
passes it or the whole enclosure fails it, and the rest (a tolerance straddled, a kink,
an enclosure that failed) go to the exact judge (mpmath, ``GradientRun.judge``), at most
``GRADIENT_UNKNOWN`` of them.  At a kink the enclosure holds both one-sided derivatives and
everything between, so a pair it settles is settled for the kink rule too.

With the domain reaching -inf: the row logp = -inf is judged against the limit of the
gradient at r = 0, and the pairs with logq = -inf are skipped (never sampled)."""
from __future__ import annotations

import math
import time

import mpmath
import numpy as np

from estimators._numerics import spacing_at
from verify.layers.floating.backward_kernel import kernel_program
from verify.layers.floating.exact_gradient import derivative_enclosure, derivative_taylor
from verify.layers.floating.exhaustive import all_values, sweep_blocks
from verify.layers.floating.tally import ExhaustiveTally, keep_examples, merge_part
from verify.layers.floating.vectorised import _enclose

# Pairs judged exactly (mpmath) at most, in row order; the rest are unsettled.  More than
# the value sweep's MAX_UNKNOWN: the kinks of a clamp of t (t = +-10 exactly) repeat one
# t and one gradient over thousands of pairs, each (t, gradient) judged once.
GRADIENT_UNKNOWN = 100_000
CALL_PAIRS = 1 << 18  # pairs per call of the gradient (whole rows): autograd's cost per call is amortised
BLOCKS = 16
_GROW, _SHRINK, _MARGIN = 1 + 2.0 ** -48, 1 - 2.0 ** -48, 2.0 ** -1000


def decide(value, low, high, info, ulps, atol):
    """{claim: (passes, fails)} for the pairs of one row from the enclosure [low, high] of
    each pair's exact gradient (NaN: unknown).  A pair is passed (failed) only when every
    exact gradient in its enclosure passes (fails) it; a pair in neither is for the judge."""
    max_finite, smallest_normal = info.max_finite, float(info.smallest_normal)
    with np.errstate(all="ignore"):
        known = ~(np.isnan(low) | np.isnan(high))
        abs_high = np.maximum(np.abs(low), np.abs(high))
        abs_low = np.where(low > 0, low, np.where(high < 0, -high, 0.0))
        all_fit = known & (abs_high <= max_finite)
        none_fit = known & (abs_low > max_finite)
        finite = np.isfinite(value)
        finite_passes = finite | none_fit
        finite_fails = ~finite & all_fit
        # beyond the finite range, for every gradient of the enclosure: +-inf or +-max with its sign
        positive, negative = low > 0, high < 0
        limit_ok = (positive & ((value == np.inf) | (value == max_finite))
                    | negative & ((value == -np.inf) | (value == -max_finite)))
        middle = 0.5 * low + 0.5 * high
        radius = (high - middle) * _GROW + _MARGIN
        distance = np.abs(value - middle)
        error_high = distance * _GROW + radius
        error_low = distance * _SHRINK - radius
        ulp_low = spacing_at(abs_low, smallest_normal, info.precision)
        ulp_high = spacing_at(abs_high * _GROW, smallest_normal, info.precision)
        tolerance_low = np.maximum(ulps * ulp_low, atol)
        tolerance_high = np.maximum(ulps * ulp_high, atol)
        sign_sure = (value == 0) | ((value > 0) & (low >= 0)) | ((value < 0) & (high <= 0))
        sign_wrong = ((value > 0) & (high < 0)) | ((value < 0) & (low > 0))
        in_range = all_fit & finite
        accurate_passes = (none_fit & limit_ok) | (
            in_range & ((error_high <= tolerance_low) | (error_high < smallest_normal)) & sign_sure)
        accurate_fails = (none_fit & ~limit_ok) | (all_fit & ~finite) | (
            in_range & (((error_low > tolerance_high) & (error_low >= smallest_normal)) | sign_wrong))
        in_ulps = np.where(in_range, distance / ulp_low, np.where(all_fit | (none_fit & ~limit_ok), np.inf, 0.0))
    return {"fp_grad_finite": (finite_passes, finite_fails),
            "fp_grad_accurate": (accurate_passes, accurate_fails)}, in_ulps


class GradientPlan:
    """What every block of rows needs: the values, the gradient, the enclosures."""

    def __init__(self, run, domain):
        from verify.strategies import numpy_dtype

        self.run, self.info = run, run.info
        self.np_dtype = numpy_dtype(run.info.name)
        self.values = all_values(self.np_dtype, domain)
        self.n = len(self.values)
        self.values_dtype = self.values.astype(self.np_dtype)
        self.rows_per_call = max(1, CALL_PAIRS // max(self.n, 1))
        self.tiled = np.tile(self.values_dtype, self.rows_per_call)
        self.derivative = derivative_enclosure(run.exact.expression, run.exact.log_ratio)
        self.taylor = derivative_taylor(run.exact.expression, run.exact.log_ratio)
        self.inexact = run.info.name != "float16"  # every difference of two float16 numbers is a double
        self.program = kernel_program(self.derivative, self.taylor)  # compiled here, before any fork
        self.hard, self.low, self.high = np.zeros(self.n, dtype=np.int8), np.zeros(self.n), np.zeros(self.n)

    def blocks(self):
        bounds = np.linspace(0, self.n, min(BLOCKS, self.n) + 1).round().astype(int).tolist()
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _enclosure(plan, logp64, logq64):
    """[low, high] around the exact gradient -g'(t) of every pair (NaN: none)."""
    if plan.derivative is None:
        nan = np.full(len(logp64), np.nan)
        return nan, nan
    with np.errstate(all="ignore"):
        d_low, d_high = _enclose(logp64 - logq64, plan.inexact, plan.derivative, plan.taylor)
    return -np.asarray(d_high, dtype=np.float64), -np.asarray(d_low, dtype=np.float64)


def judge_row(part, plan, logq_value: float, value):
    """Decide one row of pairs (log q = ``logq_value``, log p = every value); count
    failures, keep examples, queue the unknown.  With the compiled pass, only the pairs
    its quick test leaves are decided here."""
    run, info, logp64 = plan.run, plan.info, plan.values
    if plan.program is not None:
        rows, (codes, constants), taylor_arguments = plan.program
        count, best, at = rows(value, plan.values, logq_value, plan.inexact, codes, constants, *taylor_arguments,
                               run.accurate_ulps, run.atol, info.max_finite, float(info.smallest_normal),
                               2.0 ** (1 - info.precision), plan.hard, plan.low, plan.high)
        if best > part.worst_ulps[0]:
            part.worst_ulps = (float(best), float(logp64[at]), logq_value)
        if not count:
            return
        index = np.flatnonzero(plan.hard)
        logp64, value, low, high = logp64[index], value[index], plan.low[index], plan.high[index]
        logq64 = np.full(len(index), logq_value)
    else:
        logq64 = np.full(len(logp64), logq_value)
        low, high = _enclosure(plan, logp64, logq64)
    decided, in_ulps = decide(value, low, high, plan.info, run.accurate_ulps, run.atol)
    open_pairs = {}
    for claim, (passes, fails) in decided.items():
        if fails.any():
            severity = np.where(np.isnan(value), np.inf, np.where(claim == "fp_grad_finite", 1.0, in_ulps))
            keep_examples(part, claim, fails, severity, logp64, logq64)
        open_pairs[claim] = ~(passes | fails)
    worst = int(np.argmax(np.where(np.isnan(in_ulps), -1.0, in_ulps)))
    if in_ulps[worst] > part.worst_ulps[0]:
        part.worst_ulps = (float(in_ulps[worst]), float(logp64[worst]), float(logq64[worst]))
    queue(part, logp64, logq64, value, open_pairs)


def queue(part, logp64, logq64, value, open_pairs):
    """The pairs no enclosure settled, for the exact judge (the first GRADIENT_UNKNOWN in
    row order; the rest are counted as unsettled)."""
    any_open = np.zeros(len(logp64), dtype=bool)
    for mask in open_pairs.values():
        any_open |= mask
    if not any_open.any():
        return
    index = np.flatnonzero(any_open)
    room = max(0, GRADIENT_UNKNOWN - len(part.unknown))
    for i in index[:room].tolist():
        which = tuple(c for c, mask in open_pairs.items() if mask[i])
        part.unknown.append((float(logp64[i]), float(logq64[i]), float(value[i]), which))
    for claim, mask in open_pairs.items():
        beyond = int(np.count_nonzero(mask[index[room:]]))
        if beyond:
            part.unsettled[claim] = part.unsettled.get(claim, 0) + beyond


def sweep_rows(plan, first_row, end_row) -> ExhaustiveTally:
    """Every pair with log q = values[first_row:end_row]."""
    part = ExhaustiveTally()
    n = plan.n
    for start in range(first_row, end_row, plan.rows_per_call):
        stop = min(end_row, start + plan.rows_per_call)
        size = (stop - start) * n
        logq = np.repeat(plan.values_dtype[start:stop], n)
        clock = time.process_time()
        gradient = plan.run.evaluate_exact(plan.tiled[:size], logq)
        part.implementation_cpu += time.process_time() - clock
        part.pairs += size
        for row in range(start, stop):
            offset = (row - start) * n
            judge_row(part, plan, float(plan.values[row]), gradient[offset:offset + n])
    return part


def _parts(plan, workers):
    """The parts of every block, in row order (``exhaustive.sweep_blocks``: forked workers)."""
    return sweep_blocks(plan, workers, sweep_rows)


def masked_row(run, plan, tally):
    """The pairs (-inf, logq) for every logq of the domain: judged against the limit of the
    gradient at r = 0 (one exact value; each distinct gradient value judged once)."""
    logp = np.full(plan.n, -np.inf).astype(plan.np_dtype)
    gradient = run.evaluate_exact(logp, plan.values_dtype) if plan.n else np.empty(0)
    tally.pairs += plan.n
    run.masked += plan.n
    limit = run.exact.at_zero()[1]
    if limit is None:
        tally.undefined += plan.n
        return
    for value in np.unique(gradient).tolist() + ([math.nan] if np.isnan(gradient).any() else []):
        where = np.isnan(gradient) if math.isnan(value) else gradient == value
        outcome = run.judge(-math.inf, float(plan.values[0]), value)
        for claim in ("fp_grad_finite", "fp_grad_accurate"):
            ok, severity = outcome[claim]
            if not ok:
                keep_examples(tally, claim, where, np.full(plan.n, severity), np.full(plan.n, -np.inf), plan.values)


def sweep_gradient(run, domain, workers: int = 1, progress=None) -> ExhaustiveTally:
    """Both backward claims over every pair of ``domain`` in the run's 16-bit dtype."""
    plan = GradientPlan(run, domain)
    tally = ExhaustiveTally(values_per_dtype=plan.n)
    unknown = []
    for part in _parts(plan, workers):
        waiting, part.unknown = part.unknown, []  # merged here: merge_part keeps MAX_UNKNOWN only
        merge_part(tally, part)
        room = max(0, GRADIENT_UNKNOWN - len(unknown))
        unknown += waiting[:room]
        for *_, which in waiting[room:]:
            for claim in which:
                tally.unsettled[claim] = tally.unsettled.get(claim, 0) + 1
        if progress:
            progress(tally.pairs)
    judged = {}  # (exact t, gradient) -> outcome: the same at every pair sharing them
    for logp, logq, value, which in unknown:
        key = (mpmath.fsub(logp, logq, exact=True), value)
        if key not in judged:
            judged[key] = run.judge(logp, logq, value)
        outcome = judged[key]
        if outcome.get("_undefined"):
            tally.undefined += 1
            continue
        tally.settled_by_mpmath += 1
        for claim in which:
            ok, severity = outcome[claim]
            if not ok:
                keep_examples(tally, claim, np.array([True]), np.array([severity]), np.array([logp]),
                              np.array([logq]))
        if outcome["_ulps"] > tally.worst_ulps[0]:
            tally.worst_ulps = (outcome["_ulps"], logp, logq)
    if domain[0] == -math.inf:
        masked_row(run, plan, tally)
        run.never_sampled += plan.n + 1  # (logp, -inf) for every logp, -inf included
    return tally
