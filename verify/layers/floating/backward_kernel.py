"""The compiled pass of the backward sweep (numba), as ``kernel.py`` is the value sweep's.

Per pair of one row, in registers: the float64 enclosure of g' at t = logp - logq by the
derivative's tape (``kernel._enclose_tape``: the very steps of ``IntervalFunction``),
intersected near t = 0 with the Taylor model of g' (``kernel._taylor_tightened``, the
value kernel's own),
negated into the enclosure [low, high] of the exact gradient; then the quick test of
``backward_sweep.decide`` that passes both claims (a finite gradient, every exact gradient
of the enclosure in range, within the tighter tolerance, of a sure sign).  The pairs it
does not pass (``hard``) get ``decide`` in NumPy on the enclosures it wrote, so the
counts are those of the NumPy path (tests/test_floating_backward.py compares them).
Without numba the NumPy path does every pair.  ``specialised_rows`` inlines the tape as
straight-line code (as ``kernel_source.py`` does for the value sweep): the same float64
steps, so the same enclosures bit for bit, at ~55% of the CPU (k3 clamped, float16:
~125 -> ~67 ns per pair; the whole backward_verdicts run 66.8 -> 40.4 s CPU)."""
from __future__ import annotations

import inspect
import math

import numpy as np

from verify.layers.floating import kernel
from verify.layers.floating.interval import OPCODES, Unsupported
from verify.layers.floating.kernel_source import compile_generated, enclose_statements

_COMPILED = None  # the compiled gradient_rows, False when numba is missing or cannot compile it
_SPECIALISED: dict = {}  # tape bytes -> gradient_rows specialised to it, or None


def gradient_rows(value, values, logq, inexact, codes, constants, has_taylor, taylor_limit, centers, leading,
                  slope_power, bound, slope_scale, absolute, ulps, atol, max_finite, smallest_normal, ulp_scale,
                  hard, low_out, high_out):
    """One row (log q = ``logq``, log p = every value): writes the enclosure of each pair's
    exact gradient and ``hard[j]`` (1: not passed by the quick test); returns (number of
    hard pairs, the largest error in ulps among the in-range finite gradients, its index)."""
    n = values.shape[0]
    lo = np.empty(codes.shape[0])
    hi = np.empty(codes.shape[0])
    grow, margin = 1 + 2.0 ** -48, 2.0 ** -1000
    scratch = np.empty(1)
    scratch_bits = scratch.view(np.int64)
    count = 0
    best, at = -1.0, 0
    for j in range(n):
        t = values[j] - logq
        if inexact:
            t_low, t_high = kernel._widen_down(t, 1.0), kernel._widen_up(t, 1.0)
        else:
            t_low = t_high = t
        low, high = kernel._enclose_tape(t_low, t_high, codes, constants, lo, hi)
        if has_taylor and abs(t) <= taylor_limit:
            low, high = kernel._taylor_tightened(t, low, high, inexact, centers, leading, slope_power, bound,
                                                 slope_scale, absolute)
        x_low, x_high = -high, -low
        low_out[j], high_out[j] = x_low, x_high
        v = value[j]
        passed = False
        if abs(v) < math.inf and x_low == x_low and x_high == x_high:
            abs_high = max(abs(x_low), abs(x_high))
            if abs_high <= max_finite:
                middle = 0.5 * x_low + 0.5 * x_high
                radius = (x_high - middle) * grow + margin
                distance = abs(v - middle)
                error_high = distance * grow + radius
                abs_low = x_low if x_low > 0 else (-x_high if x_high < 0 else 0.0)
                scratch[0] = max(abs_low, smallest_normal)
                scratch_bits[0] = scratch_bits[0] & 0x7FF0000000000000
                ulp_low = scratch[0] * ulp_scale
                sign_sure = v == 0 or (v > 0 and x_low >= 0) or (v < 0 and x_high <= 0)
                tolerance = max(ulps * ulp_low, atol)
                passed = (error_high <= tolerance or error_high < smallest_normal) and sign_sure
                in_ulps = distance / ulp_low
                if in_ulps > best:
                    best, at = in_ulps, j
        hard[j] = 0 if passed else 1
        count += 0 if passed else 1
    return count, best, at


def _warm_up(rows, codes, constants):
    """Compile ``rows`` here (once, not in every forked worker; numba caches it on disk)."""
    rows(np.zeros(1), np.zeros(1), 0.0, False, codes, constants, *kernel.taylor_arguments(None), 4.0, 0.0, 1.0,
         1.0, 1.0, np.zeros(1, dtype=np.int8), np.zeros(1), np.zeros(1))


def compiled_rows():
    """The compiled ``gradient_rows``, or None (no numba, or it cannot compile here)."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = False
        numba = kernel.load_numba()
        if numba is not None:
            try:
                compiled = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=False)(gradient_rows)
                _warm_up(compiled, np.zeros((1, 3), dtype=np.int64), np.zeros((1, 2)))
                _COMPILED = compiled
            except Exception:  # noqa: BLE001 - numba that cannot compile here: the NumPy path
                _COMPILED = False
    return _COMPILED or None


def _extra_statements(op, i, a):
    """The lines of the instructions ``enclose_statements`` leaves to the interpreter (a
    derivative's Heaviside, sign, reciprocal, sqrt): ``_enclose_tape``'s branches, or None."""
    lo, hi, la, ha, rounded = f"l{i}", f"h{i}", f"l{a}", f"h{a}", repr(kernel.ROUNDED_WIDENING)
    if op == OPCODES["heaviside"]:
        return [f"{lo} = 1.0 if {la} > 0 else 0.0", f"{hi} = 0.0 if {ha} < 0 else 1.0"]
    if op == OPCODES["sign"]:
        return [f"{lo} = 1.0 if {la} > 0 else (-1.0 if {ha} < 0 else (0.0 if {la} == 0 else -1.0))",
                f"{hi} = -1.0 if {ha} < 0 else (1.0 if {la} > 0 else (0.0 if {ha} == 0 else 1.0))"]
    if op == OPCODES["reciprocal"]:
        return [f"if {la} <= 0 and {ha} >= 0:", f"    {lo} = {hi} = math.nan", "else:",
                f"    {lo}, {hi} = _widen_down(1.0 / {ha}, {rounded}), _widen_up(1.0 / {la}, {rounded})"]
    if op == OPCODES["sqrt"]:
        return [f"base_sqrt = {la} if {la} >= 0 else math.nan",
                f"{lo} = _nan_max(_widen_down(math.sqrt(base_sqrt) if base_sqrt == base_sqrt else math.nan, "
                f"{rounded}), 0.0)",
                f"{hi} = _widen_up(math.sqrt({ha}) if {ha} >= 0 else math.nan, {rounded})"]
    return None


def derivative_statements(codes, constants):
    """The body of ``enclose(t_lo, t_hi)`` for a derivative's tape, or None:
    ``enclose_statements`` with each instruction it does not know stood in for by a
    ``var`` (one line, ``l{i}, h{i} = t_lo, t_hi``) that is then replaced by its own lines."""
    extra, stand_in = {}, codes.copy()
    for i, (op, a, _) in enumerate(codes.tolist()):
        if op in (OPCODES["heaviside"], OPCODES["sign"], OPCODES["reciprocal"], OPCODES["sqrt"]):
            extra[f"l{i}, h{i} = t_lo, t_hi"] = _extra_statements(op, i, a)
            stand_in[i] = (OPCODES["var"], -1, -1)
    lines = enclose_statements(stand_in, constants)
    if lines is None:
        return None
    body = []
    for line in lines:
        body += extra.get(line, [line])
    return body


def specialised_rows(codes, constants):
    """``gradient_rows`` with the derivative's tape inlined as straight-line code
    (``derivative_statements``: the same float64 steps in the same order, so
    the same enclosures bit for bit, ~3x less CPU than interpreting the tape), or None
    (then ``compiled_rows``).  The generated module goes into a file named by a hash of
    its text, so that numba caches its compilation on disk as for the value kernel."""
    key = codes.tobytes() + constants.tobytes()
    if key in _SPECIALISED:
        return _SPECIALISED[key]
    _SPECIALISED[key] = None
    numba = kernel.load_numba()
    body = derivative_statements(codes, constants) if numba is not None else None
    if body is None:
        return None
    rows_source = inspect.getsource(gradient_rows).replace("def gradient_rows(", "def rows(")
    call = "low, high = kernel._enclose_tape(t_low, t_high, codes, constants, lo, hi)"
    if rows_source.count(call) != 1:
        return None
    rows_source = rows_source.replace(call, "low, high = enclose(t_low, t_high)")
    source = ("# generated by verify/layers/floating/backward_kernel.py (specialised_rows); safe to delete\n"
              "import math\n\nimport numpy as np\n\n"
              "from verify.layers.floating import kernel\n"
              "from verify.layers.floating.kernel import _nan_max, _nan_min, _widen_down, _widen_up\n\n\n"
              "def enclose(t_lo, t_hi):\n" + "".join(f"    {line}\n" for line in body) + "\n\n" + rows_source)
    compiled = compile_generated(source, "kl_verify_backward_", "rows",
                                 lambda rows: _warm_up(rows, codes, constants))
    _SPECIALISED[key] = compiled
    return compiled


def kernel_program(derivative, taylor):
    """(compiled rows, the derivative's tape, the Taylor model's arguments), or None: the
    rows specialised to the tape where they compile, else the interpreting ones."""
    if derivative is None:
        return None
    try:
        codes, constants = derivative.tape()
    except (AttributeError, Unsupported):
        return None
    rows = specialised_rows(codes, constants) or compiled_rows()
    if rows is None:
        return None
    return rows, (codes, constants), kernel.taylor_arguments(taylor)
