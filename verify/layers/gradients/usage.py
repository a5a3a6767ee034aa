"""Catalog entries in their library's modes: the score coefficient c(t, u) derived
symbolically from the loss the library builds, its expected gradients on the pairs, and the
near-to-far sweep of the libraries report."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from verify.core.expression import as_expression
from verify.errors import UsageError
from verify.layers.gradients.compiled import compile_in_log_ratio, in_log_ratio
from verify.layers.gradients.modes import Mode
from verify.layers.gradients.nonseparable import general_gradient
from verify.layers.gradients.normal import normal_rows
from verify.layers.gradients.pairs import PAIRS, Pair, pair_named
from verify.layers.gradients.references import kl_pq_value
from verify.layers.gradients.softmax import softmax_gradient
from verify.layers.gradients.symbols import LOG_RATIO, LOG_WEIGHT
from verify.layers.gradients.verdicts import GradientResult, gradient_result, round_significant

# Near-to-far sweep of the libraries report: p's logits = theta + s (far p - theta).
SWEEP_SCALES = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass(frozen=True)
class LibraryMode:
    """A library's use of its KL term, as data: the gradient of one sample x ~
    ``samples_from`` is ``coefficient(t, u) * grad log q_theta(x)`` with t = log r and
    u = log(q_theta/q_old) at x.  The coefficient is derived symbolically from the loss
    the library builds: d/dtheta of t is -score, of u is the score (where the weight is
    not detached).  ``generic``: the same as the generic mode of that name."""

    name: str
    samples_from: str
    coefficient: sp.Expr
    description: str
    generic: bool


def weight_description(usage):
    """How the library weights its term, in words (the libraries report and the mode descriptions)."""
    if usage.weight == "ratio":
        text = "weight q_theta/q_old, not detached"
    elif usage.weight == "self_ratio":
        text = "weight exp(logp - logp.detach()) (1 in value)"
    else:
        return "no weight"
    if usage.weight_detached_beyond is not None:
        text += f", detached where |log r| > {usage.weight_detached_beyond:g}"
    if usage.weight_clamp is not None:
        text += f", multiplied before the clamp to [{usage.weight_clamp[0]:g}, {usage.weight_clamp[1]:g}]"
    return text


@functools.lru_cache(maxsize=128)
def _library_modes(expr_text, usage) -> tuple:
    if usage.full_vocabulary:
        # d/dtheta sum_v q(v) (log q(v) - log p(v)) = E_q[(1 - log r) score], exactly
        coefficient = 1 - LOG_RATIO
        text = "exact sum over the vocabulary of q_theta (log q_theta - log p), whatever sampled x"
        return tuple(LibraryMode(name, "q_theta", coefficient, text, False) for name in ("loss", "loss_offpolicy"))
    g = in_log_ratio(as_expression(expr_text))
    modes = []
    if "loss" in usage.kinds:
        if usage.straight_through:
            on = off = -LOG_RATIO  # value of f, gradient of k2 = t^2/2: d/dtheta = -t score
            text = "value of the term, gradient of k2 (straight-through)"
        else:
            if usage.weight_clamp is not None:
                inner = in_log_ratio(as_expression(usage.weighted_expr))
                low, high = (sp.Float(v) for v in usage.weight_clamp)
                loss = sp.Min(sp.Max(sp.exp(LOG_WEIGHT) * inner, low), high).rewrite(sp.Piecewise)
            elif usage.weight == "none":
                loss = g
            else:
                loss = sp.exp(LOG_WEIGHT) * g
            on = -sp.diff(loss, LOG_RATIO)
            if usage.weight != "none":
                through_weight = sp.diff(loss, LOG_WEIGHT)
                if usage.weight_detached_beyond is not None:
                    bound = sp.Float(usage.weight_detached_beyond)
                    inside = (LOG_RATIO >= -bound) & (LOG_RATIO <= bound)
                    through_weight = sp.Piecewise((through_weight, inside), (0, True))
                on = on + through_weight
            off = on if usage.weight == "ratio" else on.subs(LOG_WEIGHT, 0)
            on = on.subs(LOG_WEIGHT, 0)
            text = weight_description(usage)
        plain = usage.weight == "none" and not usage.straight_through
        modes.append(LibraryMode("loss", "q_theta", on, f"on-policy loss, {text}", plain))
        modes.append(LibraryMode("loss_offpolicy", "q_old", off, f"x ~ q_old, {text}", plain))
    if "reward" in usage.kinds:
        modes.append(LibraryMode("reward", "q_theta", g, "reward, value detached (REINFORCE)", True))
    return tuple(modes)


def library_modes(estimator) -> tuple[LibraryMode, ...]:
    """The modes in which the estimator's library uses it (needs ``estimator.usage``)."""
    if getattr(estimator, "usage", None) is None:
        raise UsageError(f"{getattr(estimator, 'name', estimator)} has no library usage")
    return _library_modes(estimator.expr, estimator.usage)


def _select(modes, names):
    if names is None:
        return modes
    names = [getattr(n, "name", n) for n in names]
    known = [m.name for m in modes]
    for name in names:
        if name not in known:
            raise UsageError(f"mode {name!r} is not a library mode of this entry; known: {', '.join(known)}")
    if not names:
        raise UsageError("no mode given")
    return tuple(m for m in modes if m.name in names)


def _separable(mode):
    """(expression in t, importance weight?) for the engine, or None if the coefficient
    depends on u other than through a factor exp(u)."""
    if not mode.coefficient.has(LOG_WEIGHT):
        return mode.coefficient, False
    rest = sp.powsimp(sp.expand(mode.coefficient * sp.exp(-LOG_WEIGHT)))
    return (rest, True) if not rest.has(LOG_WEIGHT) else None


def library_gradients(mode, pairs):
    """[(gradient, error)] of one library mode on ``pairs``."""
    separable = _separable(mode)
    if separable is None:
        return [general_gradient(mode, pair) for pair in pairs]
    expr, weighted = separable
    compiled = compile_in_log_ratio(expr, str(expr), False)
    engine_mode = Mode(mode.name, mode.samples_from, weighted, True, "none", mode.description)
    out = {}
    normal = [p for p in pairs if p.family == "normal"]
    if normal:
        out.update(zip(normal, normal_rows(compiled, [(engine_mode, p) for p in normal])))
    for pair in pairs:
        if pair.family == "softmax":
            out[pair] = softmax_gradient(compiled, engine_mode, pair)
    return [out[p] for p in pairs]


def library_details(estimator, names, pairs=PAIRS) -> list[GradientResult]:
    """The rows of the library modes ``names`` (None: all) on ``pairs`` (the fixed ones)."""
    results = []
    for mode in _select(library_modes(estimator), names):
        for pair, (gradient, error) in zip(pairs, library_gradients(mode, pairs)):
            results.append(gradient_result(mode, pair, gradient, error, as_used=mode.description,
                                           generic=mode.generic))
    return results


def sweep_pairs() -> tuple[Pair, ...]:
    """Softmax pairs from near to far: p's logits = theta + s (far p - theta), s in SWEEP_SCALES."""
    far = pair_named("softmax", "far")
    return tuple(Pair("softmax", f"s={scale:g}", far.theta,
                      tuple(a + scale * (b - a) for a, b in zip(far.theta, far.p)), far.theta_old,
                      f"p logits = theta + {scale:g} (far p - theta)") for scale in SWEEP_SCALES)


def library_sweep(estimator) -> list[dict]:
    """Per library mode and sweep pair: KL(q||p), the verdict, and the cosines of the
    expected gradient with grad KL(q||p) and grad KL(p||q) (exact sums with bounds)."""
    pairs = sweep_pairs()
    rows = []
    for mode in library_modes(estimator):
        for pair, (gradient, error) in zip(pairs, library_gradients(mode, pairs)):
            result = gradient_result(mode, pair, gradient, error)
            rows.append({"mode": mode.name, "scale": SWEEP_SCALES[pairs.index(pair)], "kl_qp": result.kl_qp,
                         "kl_pq": round_significant(kl_pq_value(pair)), "gradient_of": result.gradient_of,
                         "cosine_kl_qp": result.cosine_kl_qp, "cosine_kl_pq": result.cosine_kl_pq})
    return rows
