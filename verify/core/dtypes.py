"""Facts about the floating-point dtypes the harness checks, written once."""
from __future__ import annotations

DTYPES = ("float64", "float32", "float16", "bfloat16")
# The documented input domain of the floating-point claims: log-probabilities down to
# -60 (p = 8.8e-27) cover every token log-probability a float32 softmax produces.
LOG_PROB_DOMAIN = (-60.0, 0.0)
EPS = 2.0 ** -52  # float64's machine epsilon (np.finfo(np.float64).eps)


def numpy_dtypes() -> dict:
    """{name: numpy dtype} for DTYPES (numpy and ml_dtypes load on first use)."""
    import ml_dtypes
    import numpy as np

    return {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
            "bfloat16": np.dtype(ml_dtypes.bfloat16)}
