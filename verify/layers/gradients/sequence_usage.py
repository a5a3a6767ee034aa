"""Catalog entries at sequence level, through their library's usage (issue 22): each on-policy
library mode of an entry (``usage.library_modes``) as a
:class:`~verify.layers.gradients.sequence_models.UsageTerm` of ``sequence_model``.

Sequences are sampled from q_theta (on-policy: q_old = q_theta, u = log(q_theta/q_old) = 0
in value), each token's term summed over the positions (a library that averages over
tokens scales the gradient by 1/T: the cosine does not move, the relative error does):

- ``loss``: autograd through log q_theta with the samples fixed: C_t = c(t_t), the mode's
  coefficient at u = 0 (clamps, weights and straight-through tricks included);
- ``reward``: the term's value detached, a REINFORCE reward per token with reward to go:
  C_t = g(t_t) + sum_{s > t} g(t_s);
- a sequence-level weight w = exp(mean_s u_s) (TRL's ``importance_sampling_level =
  "sequence"``) on sum_t w g(t_t): its gradient through w puts (1/T) sum_t g(t_t) on every
  position: C_t = -g'(t_t) + (1/T) (g(t_t) + sum_{s > t} g(t_s)).

``loss_offpolicy`` needs an old policy the tables do not give: left out.  The coefficients
are evaluated in ball arithmetic (``ball_expression``): their bounds hold.
"""
from __future__ import annotations

import sympy as sp

from verify.core.expression import as_expression
from verify.errors import UsageError
from verify.layers.gradients.ball_expression import Unsupported, compile_ball, evaluate_ball
from verify.layers.gradients.compiled import in_log_ratio
from verify.layers.gradients.sequence_models import UsageTerm
from verify.layers.gradients.symbols import LOG_RATIO, LOG_WEIGHT
from verify.layers.gradients.usage import library_modes

__all__ = ["usage_terms", "SEQUENCE_MODES"]

SEQUENCE_MODES = ("loss", "reward")  # the on-policy library modes a pair of tables can serve


def _ball_function(expr, label):
    try:
        compiled = compile_ball(expr)
    except Unsupported as error:
        raise UsageError(f"{label}: its coefficient {expr} cannot be bounded here ({error})") from None
    return lambda t: evaluate_ball(compiled, t)


def usage_terms(estimator, length: int) -> list[tuple[UsageTerm, str]]:
    """(term, description) per on-policy library mode of a catalog entry, named
    ``ENTRY:MODE``; UsageError for an entry without a library usage."""
    if getattr(estimator, "usage", None) is None:
        raise UsageError(f"{estimator.name} has no library usage (only catalog entries say how a library "
                         "uses them)")
    usage = estimator.usage
    out = []
    for mode in library_modes(estimator):
        if mode.name not in SEQUENCE_MODES:
            continue
        name = f"{estimator.name}:{mode.name}"
        if mode.name == "reward":
            term = UsageTerm(name, reward=_ball_function(mode.coefficient, name))
            text = "the term as a per-token reward, REINFORCE with reward to go"
        elif usage.sequence_level:
            if usage.weight != "ratio" or usage.weight_clamp is not None or usage.weight_detached_beyond is not None:
                raise UsageError(f"{name}: a sequence-level weight other than exp(mean log(q_theta/q_old)) is "
                                 "not modelled")
            g = in_log_ratio(as_expression(estimator.expr))
            term = UsageTerm(name, pathwise=_ball_function(-sp.diff(g, LOG_RATIO), name),
                             reward=_ball_function(g, name), reward_scale=1.0 / length)
            text = "a loss with the sequence-level weight exp(mean_t log(q_theta/q_old)), autograd through both"
        else:
            term = UsageTerm(name, pathwise=_ball_function(mode.coefficient.subs(LOG_WEIGHT, 0), name))
            text = mode.description
        out.append((term, text))
    return out
