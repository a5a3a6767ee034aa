"""What the layer needs to know of each dtype: its precision, its range, its ulp."""
from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np

SIXTEEN_BIT = ("float16", "bfloat16")  # decided by exhaustive enumeration, in every profile


@dataclass(frozen=True)
class DtypeInfo:
    name: str
    precision: int  # significand bits, the implicit one included
    min_exponent: int  # exponent of the smallest normal number
    max_finite: float

    @property
    def smallest_normal(self):
        return mpmath.ldexp(1, self.min_exponent)

    @property
    def unit_roundoff(self):
        return mpmath.ldexp(1, -self.precision)


DTYPE_INFO = {
    "float64": DtypeInfo("float64", 53, -1022, float(np.finfo(np.float64).max)),
    "float32": DtypeInfo("float32", 24, -126, float(np.finfo(np.float32).max)),
    "float16": DtypeInfo("float16", 11, -14, float(np.finfo(np.float16).max)),
    "bfloat16": DtypeInfo("bfloat16", 8, -126, float.fromhex("0x1.fep127")),
}


def ulp(x, info: DtypeInfo):
    """The spacing of ``info``'s numbers at the (exact, mpmath) value x."""
    if x == 0:
        exponent = info.min_exponent
    else:
        exponent = max(int(mpmath.frexp(x)[1]) - 1, info.min_exponent)
    return mpmath.ldexp(1, exponent - info.precision + 1)
