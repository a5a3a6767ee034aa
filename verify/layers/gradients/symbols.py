"""The symbols of the score coefficients: t = log r and u = log(q_theta/q_old)."""
from __future__ import annotations

import sympy as sp

# The log ratio t = log r = log p(x) - log q_theta(x): f and r f'(r) are functions of it.
LOG_RATIO = sp.Symbol("t", real=True)
# The log of the weight's value, u = log q_theta(x) - log q_old(x) (0 on-policy).
LOG_WEIGHT = sp.Symbol("u", real=True)
