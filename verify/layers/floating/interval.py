"""Certified enclosures of f(t) over NumPy arrays, for the exhaustive 16-bit checks.

``IntervalFunction(expr_in_t)`` evaluates a sympy expression in t on arrays of
intervals [t_lo, t_hi] and returns arrays [lo, hi] that contain the exact value of f at
every t in the interval.  Each float64 operation is followed by an outward widening:

- ``+ - * /`` and ``sqrt`` are correctly rounded (IEEE 754): error <= 0.5 ulp, widened
  by ``ROUNDED_OP_ULPS``;
- ``exp``, ``log``, ``expm1``, ``log1p``, ``power`` come from libm / NumPy's SIMD
  loops: we assume an error of at most ``LIBM_ULPS`` ulps (glibc documents <= 1-2 ulps
  for these on x86-64, NumPy's SIMD float64 exp/log < 4 ulps) and widen by one more.

A widening by k ulps subtracts (adds) |x| k 2^-52 + k 2^-1074 from the lower (upper)
bound; the rounding of that subtraction loses at most 2^-53 |x|, so the bound moves out
by at least k - 1 ulps of x.  A NaN anywhere (log of an interval reaching 0, inf - inf)
makes the enclosure unusable; callers treat NaN bounds as "unknown" and fall back to
mpmath.

``TaylorModel(expr_in_t)``: for |t| <= ``TAYLOR_RADIUS``, where float64 enclosures of
a cancelling formula (exp(t) - 1 - t) are as wide as the value, f is enclosed by its
Taylor polynomial at 0 plus a remainder: with arb (python-flint) power series,
f(t) = sum_{k<N} c_k t^k + a_N(xi) t^N with c_k = f^(k)(0)/k! (balls at 0) and a_N the
N-th Taylor coefficient enclosed over the whole ball |xi| <= TAYLOR_RADIUS (Taylor's
theorem with the Lagrange remainder).  The polynomial is evaluated by Horner's rule in
float64 with the classical bound gamma_2N sum |c_k| |t|^k on its rounding error.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from verify.core.dtypes import EPS

__all__ = ["IntervalFunction", "TaylorModel", "Unsupported", "ROUNDED_OP_ULPS", "LIBM_ULPS",
           "TAYLOR_RADIUS", "TAYLOR_ORDER", "OPCODES"]

ROUNDED_OP_ULPS = 2  # >= 1 ulp outward after the widening's own rounding
LIBM_ULPS = 16 + 1  # a stated bound of 16 ulps per libm call, plus the widening's rounding
TAYLOR_RADIUS = 2.0 ** -10
TAYLOR_ORDER = 6
TINY = 2.0 ** -1000  # an absolute widening in the normal range: subnormal operands are ~100x slower on x86


class Unsupported(ValueError):
    """The expression uses something the enclosures do not handle (callers fall back)."""


def _down(x, ulps):
    return x - (np.abs(x) * (ulps * EPS) + ulps * TINY)


def _up(x, ulps):
    return x + (np.abs(x) * (ulps * EPS) + ulps * TINY)


def _const(value):
    """A point (or two-float) interval around an exact sympy number."""
    value = sp.Rational(value) if isinstance(value, sp.Float) else value  # a Float's exact binary value
    if isinstance(value, sp.Rational):
        as_float = float(value)
        if math.isfinite(as_float) and sp.Rational(as_float) == value:
            return as_float, as_float
        return float(np.nextafter(as_float, -np.inf)), float(np.nextafter(as_float, np.inf))
    if value.is_real and value.is_number:
        approx = float(value.evalf(30))
        return float(np.nextafter(approx, -np.inf)), float(np.nextafter(approx, np.inf))
    raise Unsupported(f"constant {value}")


class IntervalFunction:
    """Enclosures of ``expr`` (a sympy expression in ``symbol``) over interval arrays."""

    def __init__(self, expr, symbol):
        self.symbol = symbol
        counts: dict = {}
        for node in sp.preorder_traversal(expr):
            counts[node] = counts.get(node, 0) + 1
        self._repeated = {node for node, count in counts.items() if count > 1 and node.args}
        self._memo: dict = {}
        self._expr = expr
        self._tape = None
        self._compiled = self._compile(expr)

    def __call__(self, t_lo, t_hi):
        try:
            with np.errstate(all="ignore"):
                lo, hi = self._compiled(t_lo, t_hi)
                return np.broadcast_to(lo, np.shape(t_lo)), np.broadcast_to(hi, np.shape(t_lo))
        finally:
            self._memo = {}

    def tape(self):
        """The same evaluation as a straight-line program, for a compiled scalar kernel
        (``exhaustive.py``): ``(codes, constants)`` with one row per instruction,
        ``codes[i] = (opcode, a, b)`` (operands are earlier rows, -1 when unused) and
        ``constants[i] = (lo, hi)`` (a constant's interval, or the exponent of a rational
        power in both).  Row i's result is register i; the last row is f.  Every
        instruction is the operation of this module with the same float64 steps (the
        same widenings, in the same order), so a kernel that follows ``OPCODES`` gives
        the same enclosures, bit for bit, as ``__call__`` when its libm is NumPy's."""
        if self._tape is None:
            codes, constants, registers = [], [], {}

            def emit(opcode, a=-1, b=-1, lo=0.0, hi=0.0):
                codes.append((OPCODES[opcode], a, b))
                constants.append((float(lo), float(hi)))
                return len(codes) - 1

            def rec(node):
                if node in registers:
                    return registers[node]
                registers[node] = out = self._emit(node, rec, emit)
                return out

            rec(self._expr)
            self._tape = (np.array(codes, dtype=np.int64).reshape(-1, 3),
                          np.array(constants, dtype=np.float64).reshape(-1, 2))
        return self._tape

    def _emit(self, node, rec, emit):
        """The instructions of ``node`` (mirrors ``_compile_node``); returns its register."""
        if node == self.symbol:
            return emit("var")
        if node.is_Number or isinstance(node, sp.NumberSymbol):
            lo, hi = _const(node)
            return emit("const", lo=lo, hi=hi)
        if isinstance(node, sp.Pow) and not node.args[1].is_Rational:
            return rec(sp.exp(node.args[1] * sp.log(node.args[0])))
        if isinstance(node, (sp.Add, sp.Mul)):
            constants = [a for a in node.args if a.is_Number]
            if (isinstance(node, sp.Mul) and len(constants) == 1 and constants[0] == -1
                    and len(node.args) == 2):
                other = node.args[1] if node.args[0] == constants[0] else node.args[0]
                return emit("neg", rec(other))
            out = rec(node.args[0])
            for a in node.args[1:]:
                out = emit("add" if isinstance(node, sp.Add) else "mul", out, rec(a))
            return out
        if isinstance(node, sp.Pow):
            exponent = node.args[1]
            if exponent.is_Integer:
                n = int(exponent)
                if n == 0:
                    return emit("const", lo=1.0, hi=1.0)
                base = rec(node.args[0])
                if n == 2:
                    return emit("square", base)
                out = base
                for _ in range(abs(n) - 1):
                    out = emit("mul", out, base)
                return emit("reciprocal", out) if n < 0 else out
            base = rec(node.args[0])
            if exponent == sp.Rational(1, 2):
                return emit("sqrt", base)
            power = float(exponent)
            if sp.Rational(power) != exponent:
                raise Unsupported(f"exponent {exponent}")
            return emit("power", base, lo=power, hi=power)
        unary = {sp.exp: "exp", sp.Abs: "abs", sp.sign: "sign", sp.Heaviside: "heaviside"}
        for kind, name in unary.items():
            if isinstance(node, kind):
                return emit(name, rec(node.args[0]))
        if isinstance(node, sp.log) and len(node.args) == 1:
            return emit("log", rec(node.args[0]))
        if isinstance(node, (sp.Min, sp.Max)):
            name = "min" if isinstance(node, sp.Min) else "max"
            out = rec(node.args[0])
            for a in node.args[1:]:
                out = emit(name, out, rec(a))
            return out
        raise Unsupported(f"{type(node).__name__} in {node}")

    # ---------------------------------------------------------------- compilation
    def _compile(self, node):
        compiled = self._compile_node(node)
        if node not in self._repeated:
            return compiled

        def shared(lo, hi):
            """A subexpression that occurs more than once (a clamp of t used twice) is
            evaluated once per call."""
            if node not in self._memo:
                self._memo[node] = compiled(lo, hi)
            return self._memo[node]
        return shared

    def _compile_node(self, node):
        if node == self.symbol:
            return lambda lo, hi: (lo, hi)
        if node.is_Number or isinstance(node, sp.NumberSymbol):
            c = _const(node)
            return lambda lo, hi: c
        args = [self._compile(a) for a in node.args]
        if isinstance(node, sp.Add):
            return self._fold(args, _add)
        if isinstance(node, sp.Mul):
            constants = [a for a in node.args if a.is_Number]
            if len(constants) == 1 and constants[0] == -1 and len(node.args) == 2:
                other = args[1] if node.args[0] == constants[0] else args[0]
                return lambda lo, hi: _neg(*other(lo, hi))
            return self._fold(args, _mul)
        if isinstance(node, sp.Pow):
            return self._pow(node, args[0])
        if isinstance(node, sp.exp):
            arg = args[0]
            return lambda lo, hi: _exp(*arg(lo, hi))
        if isinstance(node, sp.log) and len(node.args) == 1:
            arg = args[0]
            return lambda lo, hi: _log(*arg(lo, hi))
        if isinstance(node, sp.Abs):
            arg = args[0]
            return lambda lo, hi: _abs(*arg(lo, hi))
        if isinstance(node, (sp.Min, sp.Max)):
            pick = np.minimum if isinstance(node, sp.Min) else np.maximum

            def extremum(lo, hi):
                values = [a(lo, hi) for a in args]
                out_lo, out_hi = values[0]
                for v_lo, v_hi in values[1:]:
                    if out_lo is out_hi and v_lo is v_hi:  # points stay points
                        out_lo = out_hi = pick(out_lo, v_lo)
                    else:
                        out_lo, out_hi = pick(out_lo, v_lo), pick(out_hi, v_hi)
                return out_lo, out_hi
            return extremum
        if isinstance(node, sp.sign):
            arg = args[0]
            return lambda lo, hi: _sign(*arg(lo, hi))
        if isinstance(node, sp.Heaviside):
            arg = args[0]
            return lambda lo, hi: _heaviside(*arg(lo, hi))
        raise Unsupported(f"{type(node).__name__} in {node}")

    @staticmethod
    def _fold(args, op):
        def folded(lo, hi):
            out = args[0](lo, hi)
            for a in args[1:]:
                out = op(out, a(lo, hi))
            return out
        return folded

    def _pow(self, node, base):
        exponent = node.args[1]
        if not exponent.is_Rational:
            arg = self._compile(sp.exp(exponent * sp.log(node.args[0])))
            return arg
        if exponent.is_Integer:
            n = int(exponent)
            if n == 0:
                return lambda lo, hi: (1.0, 1.0)
            if n == 2:
                return lambda lo, hi: _square(*base(lo, hi))

            def integer_power(lo, hi):
                b = base(lo, hi)
                out = b
                for _ in range(abs(n) - 1):
                    out = _mul(out, b)
                return _reciprocal(*out) if n < 0 else out
            return integer_power
        if exponent == sp.Rational(1, 2):
            return lambda lo, hi: _sqrt(*base(lo, hi))
        power = float(exponent)
        if sp.Rational(power) != exponent:
            raise Unsupported(f"exponent {exponent}")

        def rational_power(lo, hi):
            b_lo, b_hi = base(lo, hi)
            b_lo = np.where(b_lo >= 0, b_lo, np.nan)  # a negative base: not defined
            if power > 0:
                return np.maximum(_down(np.power(b_lo, power), LIBM_ULPS), 0.0), _up(np.power(b_hi, power), LIBM_ULPS)
            return np.maximum(_down(np.power(b_hi, power), LIBM_ULPS), 0.0), _up(np.power(b_lo, power), LIBM_ULPS)
        return rational_power


# The instructions of ``IntervalFunction.tape`` (a kernel decodes them by number).
OPCODES = {name: code for code, name in enumerate((
    "var", "const", "add", "neg", "mul", "square", "reciprocal", "sqrt", "power", "exp", "log", "abs",
    "min", "max", "sign", "heaviside"))}


def _widen(lo, hi, ulps):
    """[_down(lo), _up(hi)]; for a point (lo is hi: one array for both ends, as the
    exhaustive float16 sweep's exact log ratios are) the widening is computed once."""
    if lo is hi:
        width = np.abs(lo) * (ulps * EPS) + ulps * TINY
        return lo - width, lo + width
    return _down(lo, ulps), _up(hi, ulps)


def _add(a, b):
    if a[0] is a[1] and b[0] is b[1]:
        total = a[0] + b[0]
        return _widen(total, total, ROUNDED_OP_ULPS)
    return _down(a[0] + b[0], ROUNDED_OP_ULPS), _up(a[1] + b[1], ROUNDED_OP_ULPS)


def _neg(lo, hi):
    if lo is hi:
        negated = -lo
        return negated, negated
    return -hi, -lo


def _mul(a, b):
    a_lo, a_hi = a
    b_lo, b_hi = b
    if np.isscalar(a_lo) and a_lo == a_hi:
        return _scale(a_lo, b_lo, b_hi)
    if np.isscalar(b_lo) and b_lo == b_hi:
        return _scale(b_lo, a_lo, a_hi)
    products = (a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)
    lo = np.minimum(np.minimum(products[0], products[1]), np.minimum(products[2], products[3]))
    hi = np.maximum(np.maximum(products[0], products[1]), np.maximum(products[2], products[3]))
    return _down(lo, ROUNDED_OP_ULPS), _up(hi, ROUNDED_OP_ULPS)


def _scale(c, lo, hi):
    if lo is hi:
        product = c * lo
        return _widen(product, product, ROUNDED_OP_ULPS)
    if c >= 0:
        return _down(c * lo, ROUNDED_OP_ULPS), _up(c * hi, ROUNDED_OP_ULPS)
    return _down(c * hi, ROUNDED_OP_ULPS), _up(c * lo, ROUNDED_OP_ULPS)


def _square(lo, hi):
    low_sq, high_sq = lo * lo, hi * hi
    straddles = (lo < 0) & (hi > 0)
    out_lo = np.where(straddles, 0.0, np.minimum(low_sq, high_sq))
    out_hi = np.maximum(low_sq, high_sq)
    return np.maximum(_down(out_lo, ROUNDED_OP_ULPS), 0.0), _up(out_hi, ROUNDED_OP_ULPS)


def _reciprocal(lo, hi):
    bad = (lo <= 0) & (hi >= 0)
    return (np.where(bad, np.nan, _down(1.0 / hi, ROUNDED_OP_ULPS)),
            np.where(bad, np.nan, _up(1.0 / lo, ROUNDED_OP_ULPS)))


def _sqrt(lo, hi):
    lo = np.where(lo >= 0, lo, np.nan)
    return np.maximum(_down(np.sqrt(lo), ROUNDED_OP_ULPS), 0.0), _up(np.sqrt(hi), ROUNDED_OP_ULPS)


def _exp(lo, hi):
    if lo is hi:
        value = np.exp(lo)
        low, high = _widen(value, value, LIBM_ULPS)
        return np.maximum(low, 0.0), high
    return np.maximum(_down(np.exp(lo), LIBM_ULPS), 0.0), _up(np.exp(hi), LIBM_ULPS)


def _log(lo, hi):
    if lo is hi:
        value = np.log(np.where(lo > 0, lo, np.nan))
        return _widen(value, value, LIBM_ULPS)
    lo = np.where(lo > 0, lo, np.nan)
    return _down(np.log(lo), LIBM_ULPS), _up(np.log(hi), LIBM_ULPS)


def _abs(lo, hi):
    out_lo = np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0.0))
    out_hi = np.maximum(np.abs(lo), np.abs(hi))
    return out_lo, out_hi


def _sign(lo, hi):
    return np.where(lo > 0, 1.0, np.where(hi < 0, -1.0, np.where(lo == 0, 0.0, -1.0))), \
        np.where(hi < 0, -1.0, np.where(lo > 0, 1.0, np.where(hi == 0, 0.0, 1.0)))


def _heaviside(lo, hi):
    # sympy's Heaviside(0) is 1/2; [0, 1] encloses every convention
    return np.where(lo > 0, 1.0, 0.0), np.where(hi < 0, 0.0, 1.0)


# ------------------------------------------------------------------- Taylor model


class TaylorModel:
    """Enclosure of f(t) for |t| <= TAYLOR_RADIUS by a Taylor polynomial with a
    certified remainder (see the module docstring).  Raises ``Unsupported`` when f is
    not analytic on that ball (a kink, log of a ball reaching 0) or uses other functions."""

    def __init__(self, expr, symbol, radius=TAYLOR_RADIUS, order=TAYLOR_ORDER, precision=160):
        from flint import arb, arb_series, ctx

        self.radius, self.order = radius, order
        old = ctx.prec
        ctx.prec = precision
        try:
            at_zero = _series(expr, symbol, arb_series([arb(0), 1], prec=order + 1), arb, arb_series)
            on_ball = _series(expr, symbol, arb_series([arb(0, radius), 1], prec=order + 1), arb, arb_series)
            coefficients = list(at_zero.coeffs()) + [arb(0)] * (order + 1)
            ball_coefficients = list(on_ball.coeffs()) + [arb(0)] * (order + 1)
            self.centers, self.radii = [], []
            for c in coefficients[:order]:
                if not c.is_finite():
                    raise Unsupported("non-finite Taylor coefficient")
                center = float(c.mid())
                # the ball's radius plus the rounding of its centre to float64, rounded up
                spread = float((abs(c - center) + c.rad()).upper())
                self.centers.append(center)
                self.radii.append(spread * (1 + 2 ** -40) + TINY if spread > 0 else 0.0)
            remainder = ball_coefficients[order]
            slope = ball_coefficients[1]
            if not (remainder.is_finite() and slope.is_finite()):
                raise Unsupported("no finite remainder bound")
            self.remainder = float(abs(remainder).upper()) * (1 + 2 ** -40)
            self.slope = float(abs(slope).upper()) * (1 + 2 ** -40)
        finally:
            ctx.prec = old
        # For |t| <= radius every correction is at most a constant times |t|^m, with m the
        # first index whose coefficient ball is not exactly 0 (f = O(t^m) at 0):
        #   Horner's rounding   gamma_2N sum |c_k| |t|^k
        #   the balls' radii    sum rad_k |t|^k
        #   the remainder       |a_N| |t|^N
        # so the enclosure is P(t) +- bound |t|^m, P evaluated in float64 at the centres.
        nonzero = [k for k in range(order) if self.centers[k] != 0 or self.radii[k] != 0]
        self.leading = nonzero[0] if nonzero else order
        n = 2 * order + 4
        gamma = n * EPS / (1 - n * EPS)  # gamma_2N with room to spare (u = EPS / 2)
        scale = [radius ** (k - self.leading) for k in range(order + 1)]
        bound = sum((gamma * abs(c) + r) * scale[k] for k, (c, r) in enumerate(zip(self.centers, self.radii))
                    if k >= self.leading)
        bound += self.remainder * scale[order]
        self.bound = bound * (1 + 2 ** -20)
        self.absolute = 16 * order * TINY  # roundings in the subnormal range
        # |f'(xi)| <= sum_{1<=j<N} j |c_j| |xi|^(j-1) + N |a_N| |xi|^(N-1) (Taylor's theorem for
        # f' with the Lagrange remainder f^(N)(eta)/(N-1)! = N a_N(eta)), so for |xi| <= radius
        # |f'(xi)| <= slope_scale |xi|^max(m-1, 0): the effect of an inexact t stays relative
        first = max(self.leading, 1)
        slope_scale = sum(j * (abs(self.centers[j]) + self.radii[j]) * radius ** (j - first)
                          for j in range(first, order))
        slope_scale += order * self.remainder * radius ** (order - first)
        self.slope_scale = slope_scale * (1 + 2 ** -20)
        self.slope_power = first - 1

    def __call__(self, t, t_error):
        """(lo, hi) enclosing f at every point within ``t_error`` of ``t`` (|t| + t_error <= radius)."""
        with np.errstate(all="ignore"):
            value = self.centers[-1] * t + self.centers[-2]
            for k in range(self.order - 3, -1, -1):
                value = value * t + self.centers[k]
            magnitude = np.abs(t)
            reach = magnitude * (1 + 2.0 ** -50) + t_error  # |xi| for xi within t_error of t
            slope_power = np.ones_like(t)
            for _ in range(self.slope_power):
                slope_power = slope_power * reach
            power = np.ones_like(t)
            for _ in range(self.leading):
                power = power * magnitude
            spread = (self.bound * power * (1 + 2 ** -40) + self.slope_scale * slope_power * t_error * (1 + 2 ** -40)
                      + self.absolute)
            return value - spread, value + spread


def _series(node, symbol, x, arb, arb_series):
    """The arb power series of ``node`` with ``x`` the series of the symbol."""
    def rec(n):
        if n == symbol:
            return x
        if n.is_Number:
            if n.is_Rational:
                return arb(int(n.p)) / arb(int(n.q))
            return arb(str(sp.Float(n, 60)))
        if isinstance(n, sp.NumberSymbol):
            return arb(str(n.evalf(60)))
        if isinstance(n, sp.Add):
            out = rec(n.args[0])
            for a in n.args[1:]:
                out = out + rec(a)
            return out
        if isinstance(n, sp.Mul):
            out = rec(n.args[0])
            for a in n.args[1:]:
                out = out * rec(a)
            return out
        if isinstance(n, sp.Pow):
            base, exponent = rec(n.args[0]), n.args[1]
            if exponent.is_Integer and int(exponent) >= 0:
                out = 1
                for _ in range(int(exponent)):
                    out = out * base
                return out
            if exponent.is_Integer:
                out = base
                for _ in range(-int(exponent) - 1):
                    out = out * base
                return 1 / out
            return (rec(exponent) * _log_series(base, arb_series)).exp() if isinstance(base, arb_series) \
                else arb_series([base ** (arb(int(exponent.p)) / arb(int(exponent.q)))], prec=x.prec)
        if isinstance(n, sp.exp):
            a = rec(n.args[0])
            return a.exp() if isinstance(a, arb_series) else a.exp()
        if isinstance(n, sp.log) and len(n.args) == 1:
            a = rec(n.args[0])
            return _log_series(a, arb_series) if isinstance(a, arb_series) else a.log()
        if isinstance(n, (sp.Abs, sp.Min, sp.Max)):
            values = [rec(a) for a in n.args]
            heads = [v.coeffs()[0] if isinstance(v, arb_series) else v for v in values]
            if isinstance(n, sp.Abs):
                head = heads[0]
                if head > 0:
                    return values[0]
                if head < 0:
                    return -values[0]
                raise Unsupported("Abs at a kink")
            for i, head in enumerate(heads):
                others = [h for j, h in enumerate(heads) if j != i]
                if all((head < h) if isinstance(n, sp.Min) else (head > h) for h in others):
                    return values[i]
            raise Unsupported("Min/Max switches on the ball")
        raise Unsupported(f"{type(n).__name__}")
    return rec(node)


def _log_series(series, arb_series):
    head = series.coeffs()[0] if series.coeffs() else None
    if head is None or not head > 0:
        raise Unsupported("log of a series whose value may be <= 0")
    return series.log()
