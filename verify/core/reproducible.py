"""The same numbers on every x86-64 machine.

NumPy chooses its loops for exp, log, expm1, log1p, power, ... by the CPU when it is
imported.  Where the CPU has AVX-512 they are other loops (Intel's SVML), a few ulps
away from the AVX2 and libm ones: the implementations under test, the quadrature and
the enclosures then give other last bits, and the worst errors, error bounds and even
the counts of failing 16-bit pairs in ``reports/`` would depend on the machine that
ran ``verify all``.  The processes the tool starts (the CLI, the test suite) therefore
turn NumPy's AVX-512 dispatch off before NumPy loads; the library, imported by a user,
never changes its host process.
"""
from __future__ import annotations

import os
import sys

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
# NumPy < 2.4 names the AVX-512 groups one by one, NumPy >= 2.4 as X86_V4 and after;
# names a NumPy does not know are ignored
AVX512 = ("AVX512F", "AVX512CD", "AVX512_KNL", "AVX512_KNM", "AVX512_SKX", "AVX512_CLX", "AVX512_CNL",
          "AVX512_ICL", "AVX512_SPR", "X86_V4")


def pin_numpy_dispatch(environ=None) -> bool:
    """Disable NumPy's AVX-512 loops in this process and the ones it starts (their
    environment).  False when NumPy is already loaded here: too late for this process."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(VARIABLE, "").replace(",", " ").split()
    environ[VARIABLE] = " ".join(chosen + [name for name in AVX512 if name not in chosen])
    return "numpy" not in sys.modules
