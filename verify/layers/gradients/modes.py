"""How an estimator value enters training (:class:`Mode`): the generic modes of the layer,
named in ``verify.core.claims.MODE_NAMES`` (their one home) and defined here in that order."""
from __future__ import annotations

from dataclasses import dataclass

from verify.core import claims
from verify.errors import UsageError

MODE_NAMES = claims.MODE_NAMES


@dataclass(frozen=True)
class Mode:
    """How an estimator value enters training, as data.

    The gradient of one sample x ~ ``samples_from`` is
    ``[w] * ([f(r)] + pathwise) * grad log q_theta(x)`` where w = q_theta/q_old if
    ``importance_weight``, f(r) is present if ``value_score`` (REINFORCE with the value
    detached, or the gradient through the weight w), and ``pathwise`` is autograd
    through r = p/q_theta inside the estimator: ``"estimator"`` gives -r f'(r),
    ``"k2"`` gives -r k2'(r) = -log r, ``"none"`` gives 0.
    """

    name: str
    samples_from: str  # "q_theta" or "q_old"
    importance_weight: bool
    value_score: bool
    pathwise: str  # "estimator", "k2" or "none"
    description: str


MODES = (
    Mode("loss", "q_theta", False, False, "estimator",
         "on-policy, x ~ q_theta, autograd through log q_theta(x): -r f'(r) grad log q"),
    Mode("reward", "q_theta", False, True, "none",
         "value detached, REINFORCE: f(r) grad log q"),
    Mode("loss_offpolicy", "q_old", False, False, "estimator",
         "x ~ q_old, no importance weight, autograd through log q_theta (GRPO's KL term)"),
    Mode("loss_is_weighted", "q_old", True, True, "estimator",
         "x ~ q_old, value w f(r) with w = q_theta/q_old, autograd through w and f"),
    Mode("straight_through", "q_theta", False, False, "k2",
         "on-policy, value of f, gradient of k2: -log r grad log q"),
)
assert tuple(m.name for m in MODES) == MODE_NAMES, "MODES must follow verify.core.claims.MODE_NAMES"
_MODES_BY_NAME = {m.name: m for m in MODES}


def parse_modes(names) -> tuple[Mode, ...]:
    """Modes by name (None: all), in the order of MODES; UsageError on an unknown one."""
    if names is None:
        return MODES
    wanted = []
    for name in names:
        if name not in _MODES_BY_NAME:
            raise UsageError(f"unknown mode {name!r}; known: {', '.join(MODE_NAMES)}")
        wanted.append(name)
    if not wanted:
        raise UsageError("no mode given")
    return tuple(m for m in MODES if m.name in wanted)
