"""Midpoint-radius arithmetic on numpy arrays: every value carries a radius that bounds
the distance to the exact real value, whatever the rounding did.

A :class:`Ball` is ``(mid, rad)``: the exact value x satisfies |x - mid| <= rad,
elementwise.  Each operation computes its mid in float64 (round to nearest) and a radius
from the standard bounds (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 2-4;
Rump's midpoint-radius arithmetic), with u = 2^-53 the unit roundoff and TINY = 2^-1074
the smallest subnormal:

- one rounded operation with result z: |error| <= u |exact| + TINY/2 <= EPS |z| + TINY
  (EPS = 2u; TINY covers a result in the subnormal range; a sum is exact there);
- x + y: rad_x + rad_y + EPS |z|;
- x * y: |x| rad_y + |y| rad_x + rad_x rad_y + EPS |z| + TINY;
- a sum of n terms in any order (numpy's pairwise sum): sum rad_i + (n - 1) u (1 + ...) sum |x_i|,
  bounded by sum rad_i + n EPS sum |x_i| (gamma_{n-1} <= n EPS for n EPS < 1/2);
- exp(x): exp(X) for |X - x| <= r lies within exp(x) expm1(r) of exp(x); numpy's exp, expm1,
  log and log1p are taken to be within LIBM_ULPS = 4 ulps (glibc's are within 1-2, NumPy's
  AVX-512 loops a few), doubled here: 8 ulps, and one ulp of z is at most EPS |z| (8 TINY
  for a subnormal result);
- log(x), x > 0: |log X - log x| <= -log1p(-r/x) <= r/x + (r/x)^2 for r/x <= 1/2 (else the
  radius is infinite: the value is then not decided).

The radius itself is computed in float64 from a few non-negative terms; :func:`_up` makes
it an upper bound of the exact radius expression: k <= 8 roundings of non-negative terms
lose at most a factor (1 - u)^k, and underflow at most a few TINY, so multiplying by
(1 + 16 EPS) and adding 4 TINY covers both (for a sum of n terms, (1 + 2 (n + 8) EPS)).
A non-finite radius (overflow) never passes silently: :func:`require_finite` raises.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verify.core.dtypes import EPS

__all__ = ["Ball", "TINY", "LIBM_REL", "exact", "require_finite", "BallOverflow"]

TINY = 2.0 ** -1074
LIBM_ULPS = 4.0
LIBM_REL = 2 * LIBM_ULPS * EPS  # the stated ulps bound, doubled, as a relative error


class BallOverflow(ArithmeticError):
    """A value or its radius left the float64 range: no bound can be given."""


def _up(rad, terms=8):
    """An upper bound of the exact radius expression computed as ``rad`` (see the module)."""
    return rad * (1.0 + 2 * (terms + 8) * EPS) + 4 * TINY


@dataclass(frozen=True)
class Ball:
    mid: np.ndarray
    rad: np.ndarray

    def __add__(self, other):
        other = _ball(other)
        z = self.mid + other.mid
        return Ball(z, _up(self.rad + other.rad + EPS * np.abs(z)))

    __radd__ = __add__

    def __sub__(self, other):
        other = _ball(other)
        z = self.mid - other.mid
        return Ball(z, _up(self.rad + other.rad + EPS * np.abs(z)))

    def __rsub__(self, other):
        return _ball(other) - self

    def __neg__(self):
        return Ball(-self.mid, self.rad)

    def __mul__(self, other):
        other = _ball(other)
        z = self.mid * other.mid
        rad = np.abs(self.mid) * other.rad + np.abs(other.mid) * self.rad + self.rad * other.rad
        return Ball(z, _up(rad + EPS * np.abs(z) + TINY))

    __rmul__ = __mul__

    def square(self):
        z = self.mid * self.mid
        return Ball(z, _up(2 * np.abs(self.mid) * self.rad + self.rad * self.rad + EPS * z + TINY))

    def exp(self):
        """exp(x); the radius covers the input's radius and numpy's exp (LIBM_REL).  The
        input's part is exp(x) expm1(r) with exp(x) bounded above by z (1 + 2 LIBM_REL) +
        8 TINY: so it holds where z underflows too."""
        z = np.exp(self.mid)
        growth = np.expm1(self.rad) * (1 + LIBM_REL)
        return Ball(z, _up((z * (1 + 2 * LIBM_REL) + 8 * TINY) * growth + LIBM_REL * z + 8 * TINY))

    def expm1(self):
        """exp(x) - 1 without cancellation near 0: the derivative is exp(X) <= exp(x + r)."""
        z = np.expm1(self.mid)
        growth = np.expm1(self.rad) * (1 + LIBM_REL)
        scale = np.exp(self.mid) * (1 + 2 * LIBM_REL) + 8 * TINY   # >= exp(x), underflow included
        return Ball(z, _up(scale * growth + LIBM_REL * np.abs(z) + 8 * TINY))

    def log(self):
        """log(x) for x > 0 (mid > 0 where used); infinite radius where r/x > 1/2."""
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log(self.mid)
            ratio = (self.rad / self.mid) * (1 + EPS)
            spread = np.where((self.mid > 0) & (ratio <= 0.5), ratio + ratio * ratio, np.inf)
        return Ball(z, _up(spread + LIBM_REL * np.abs(z)))

    def sum(self, axis=-1):
        """The sum along ``axis`` (any summation order)."""
        n = self.mid.shape[axis]
        z = np.sum(self.mid, axis=axis)
        rad = np.sum(self.rad, axis=axis) + n * EPS * np.sum(np.abs(self.mid), axis=axis)
        return Ball(z, _up(rad, terms=n + 2))

    def where(self, mask, other=0.0):
        """This ball where ``mask``, ``other`` (an exact number or a ball) elsewhere."""
        other = _ball(other)
        return Ball(np.where(mask, self.mid, other.mid), np.where(mask, self.rad, other.rad))

    def __getitem__(self, index):
        return Ball(self.mid[index], self.rad[index])

    def reshape(self, *shape):
        return Ball(self.mid.reshape(*shape), self.rad.reshape(*shape))

    @property
    def shape(self):
        return np.shape(self.mid)


def exact(values) -> Ball:
    """Numbers known exactly (user input, 0, 1)."""
    values = np.asarray(values, dtype=np.float64)
    return Ball(values, np.zeros_like(values))


def _ball(x) -> Ball:
    if isinstance(x, Ball):
        return x
    return Ball(np.float64(x) if np.ndim(x) == 0 else np.asarray(x, dtype=np.float64), np.float64(0.0))


def require_finite(ball: Ball, what: str) -> Ball:
    """``ball`` unchanged, or :class:`BallOverflow` when a mid or radius is inf or nan."""
    if not (np.all(np.isfinite(ball.mid)) and np.all(np.isfinite(ball.rad))):
        raise BallOverflow(f"{what} leaves the float64 range (or has no finite error bound)")
    return ball
