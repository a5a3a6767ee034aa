"""The estimator registry.

An estimator is a function f(r) of the ratio r = p(x)/q(x) at one sample x ~ q (see
``docs/claims.md``).  Every module-level :class:`Estimator` in a module of this
package, and every one exposed through the ``kl_verify.estimators`` entry-point group,
is registered: adding an estimator takes one file.

The registry knows nothing of the harness: it holds names, formulas, implementations
and declared claims, and never imports ``verify``.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

__all__ = ["Estimator", "Usage", "registry", "estimators_in"]

ENTRY_POINT_GROUP = "kl_verify.estimators"
# What an Estimator's ``numeric`` takes and returns: NumPy arrays or torch tensors.
FRAMEWORKS = ("numpy", "torch")


USAGE_KINDS = ("loss", "reward")
WEIGHTS = ("none", "ratio", "self_ratio")


@dataclass(frozen=True)
class Usage:
    """How a training library uses a shipped KL term, as plain data (the harness derives
    the per-sample gradient from it; see verify/layers/gradients/).

    ``weight``: ``"none"``; ``"ratio"``, the importance weight q_theta/q_old, not
    detached; ``"self_ratio"``, exp(logp - logp.detach()): 1 in value, the score in
    gradient.  ``weight_detached_beyond``: where |log r| exceeds it the weight is detached.
    ``weight_clamp`` with ``weighted_expr``: the loss is clamp(w * weighted_expr, lo, hi)
    (the weight multiplied before the clamp).  ``straight_through``: the value of this
    term with the gradient of k2 = (log r)^2 / 2.  ``sequence_level``: the weight is
    exp(mean over the sequence of log(q_theta/q_old)), broadcast onto every token.
    ``full_vocabulary``: the exact KL(q||p) of the position, summed over the vocabulary.
    """

    library: str
    option: str
    kinds: tuple[str, ...] = ("loss",)
    default_for: tuple[str, ...] = ()
    weight: str = "none"
    weight_detached_beyond: float | None = None
    weight_clamp: tuple[float, float] | None = None
    weighted_expr: str | None = None
    straight_through: bool = False
    sequence_level: bool = False
    full_vocabulary: bool = False
    computes_in: str = "the input dtype"
    coefficient: str = ""
    advice: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "default_for", tuple(self.default_for))
        if not self.kinds or any(k not in USAGE_KINDS for k in self.kinds):
            raise ValueError(f"Usage.kinds must be a non-empty subset of {USAGE_KINDS}")
        if any(k not in self.kinds for k in self.default_for):
            raise ValueError("Usage.default_for must be a subset of Usage.kinds")
        if self.weight not in WEIGHTS:
            raise ValueError(f"Usage.weight must be one of {WEIGHTS}")
        if (self.weight_clamp is None) != (self.weighted_expr is None):
            raise ValueError("Usage.weight_clamp and Usage.weighted_expr go together")


@dataclass(frozen=True)
class Estimator:
    """One KL estimator f(r), what it is said to satisfy, and where it comes from.

    ``expr`` is a sympy expression or a string in ``r``; the harness parses strings
    with a whitelist.  ``numeric(logp, logq)`` is the shipped implementation: arrays
    of one float dtype in, an array of that dtype out.  ``claims`` are claim names of
    ``docs/claims.md`` (floating-point ones may carry ``@dtype``).  ``fp_ulps`` and
    ``fp_atol`` widen ``fp_accurate``: a value within ``fp_ulps`` ulps of the exact f, or
    within ``fp_atol`` of it in absolute terms, is accurate (an RL penalty does not care
    about 1e7 ulps at a value of 4e-28).  ``framework`` says what ``numeric`` takes and
    returns: ``"numpy"`` arrays, or ``"torch"`` tensors (the harness converts exactly,
    bfloat16 included; torch is an optional extra).  ``usage`` says how
    a training library uses the term (the catalog's entries); ``expr`` is None only for a
    term that is not a function of r at one sample (the full-vocabulary KL).
    ``numeric_grad(logp, logq)``, for a NumPy ``numeric`` emulating torch code: the
    gradient of that code with respect to logq (the policy log-prob) elementwise,
    upstream gradient 1 in the output dtype, as torch autograd computes it in its dtypes
    and order, returned in logq's dtype like ``.grad`` (0 x inf = NaN included: an exp
    that overflowed, under a clamp or torch.where branch that gives it a 0 gradient);
    for a weighted or straight-through usage, that of the library's whole expression
    on-policy (old = logq detached).  There autograd is not the derivative of ``expr``
    (a weight exp(logq - logq.detach()) is 1 in value, not in gradient), so
    ``backward_expr`` gives an expression in r whose derivative with respect to logq is
    the exact gradient of that whole expression: the backward claims judge
    ``numeric_grad`` by it (tests/test_catalog.py checks it against the gradient layer's
    own derivation of the library's loss).
    """

    name: str
    expr: Any
    numeric: Callable[[Any, Any], Any] | None = None
    claims: tuple[str, ...] = ()
    source: str = ""
    description: str = ""
    fp_ulps: float | None = None
    fp_atol: float | None = None
    fp_notes: dict[str, str] = field(default_factory=dict)
    framework: str = "numpy"
    usage: Usage | None = None
    numeric_grad: Callable[[Any, Any], Any] | None = None
    backward_expr: Any = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("Estimator.name must be a non-empty string")
        if self.expr is None and not (self.usage is not None and self.usage.full_vocabulary):
            raise ValueError("Estimator.expr is required (None only for a full-vocabulary usage)")
        object.__setattr__(self, "claims", tuple(self.claims))
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"Estimator.framework must be one of {', '.join(FRAMEWORKS)}; got {self.framework!r}")


def estimators_in(module) -> list[Estimator]:
    """The module-level Estimator objects of one module, in definition order."""
    return [value for value in vars(module).values() if isinstance(value, Estimator)]


def _package_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        yield importlib.import_module(f"{__name__}.{info.name}")


def _entry_point_estimators():
    found = []
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        loaded = entry.load()
        if isinstance(loaded, Estimator):
            found.append(loaded)
        elif hasattr(loaded, "__dict__"):
            found.extend(estimators_in(loaded))
        else:
            found.extend(e for e in loaded if isinstance(e, Estimator))
    return found


def registry() -> dict[str, Estimator]:
    """Every registered estimator by name; a name registered twice is an error."""
    found: dict[str, Estimator] = {}
    candidates = [e for module in _package_modules() for e in estimators_in(module)]
    candidates += _entry_point_estimators()
    for estimator in candidates:
        other = found.get(estimator.name)
        if other is not None and other is not estimator:
            raise ValueError(f"estimator name {estimator.name!r} is registered twice")
        found[estimator.name] = estimator
    return found
