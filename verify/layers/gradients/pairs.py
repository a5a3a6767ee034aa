"""The fixed (q_theta, p) pairs of the sweep, each with the old policy of the off-policy modes."""
from __future__ import annotations

import math
from dataclasses import dataclass

from verify.errors import UsageError


@dataclass(frozen=True)
class Pair:
    """One fixed (q_theta, p) pair and the old policy q_old of the off-policy modes.

    softmax: ``theta``, ``p`` and ``theta_old`` are logits.  normal: (loc, log_scale).
    """

    family: str
    regime: str
    theta: tuple
    p: tuple
    theta_old: tuple
    note: str


_SOFTMAX_THETA = (1.2, 0.6, 0.1, -0.4, -1.0, -2.2)
# q_old: the logits shifted by 0.1 * (+1, -1, +1, ...): KL(q_old||q_theta) about 5e-3.
_SOFTMAX_OLD = tuple(v + 0.1 * (-1) ** i for i, v in enumerate(_SOFTMAX_THETA))
_NORMAL_THETA = (0.25, -0.1)
_NORMAL_SCALE = math.exp(_NORMAL_THETA[1])
# q_old: loc + 0.1 scale, log_scale - 0.05 (narrower, so that every off-policy
# integral of the sweep converges): KL(q_old||q_theta) about 7e-3.
_NORMAL_OLD = (_NORMAL_THETA[0] + 0.1 * _NORMAL_SCALE, _NORMAL_THETA[1] - 0.05)

PAIRS = (
    Pair("softmax", "near", _SOFTMAX_THETA,
         tuple(v + 0.05 * d for v, d in zip(_SOFTMAX_THETA, (1, -1, 0.5, -0.5, 0.8, -0.8))),
         _SOFTMAX_OLD, "V = 6; p logits = theta + 0.05 * (1, -1, .5, -.5, .8, -.8); KL(q||p) = 9.0e-4"),
    Pair("softmax", "far", _SOFTMAX_THETA, (0.2, 1.4, -0.6, 0.3, -1.2, 1.6), _SOFTMAX_OLD,
         "V = 6; KL(q||p) = 0.77; the last outcome has q = 0.015 and log r = 3.28 > 2.611, so "
         "k3 = 22 exceeds the clamp at 10 there and a clamped k3's gradient (verl_low_var_kl) vanishes on it"),
    Pair("normal", "near", _NORMAL_THETA,
         (_NORMAL_THETA[0] + 0.035 * _NORMAL_SCALE, _NORMAL_THETA[1] + 0.02), _NORMAL_OLD,
         "p = N(loc + 0.035 scale, (scale e^0.02)^2); KL(q||p) = 9.8e-4"),
    Pair("normal", "far", _NORMAL_THETA,
         (_NORMAL_THETA[0] + 2.5 * _NORMAL_SCALE, _NORMAL_THETA[1] + math.log(3.0)), _NORMAL_OLD,
         "p = N(loc + 2.5 scale, (3 scale)^2); KL(q||p) = 1.0; log r > 2.611 (k3 > 10: the clamp "
         "is active) for 0.36% of q's mass and 50% of p's, so a clamped k3's gradient (verl_low_var_kl) differs"),
)


def pair_named(family, regime) -> Pair:
    """The pair of PAIRS with that family and regime; UsageError otherwise."""
    for pair in PAIRS:
        if pair.family == family and pair.regime == regime:
            return pair
    raise UsageError(f"unknown family/regime {family!r}/{regime!r}")
