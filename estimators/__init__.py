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

__all__ = ["Estimator", "registry", "estimators_in"]

ENTRY_POINT_GROUP = "kl_verify.estimators"
# What an Estimator's ``numeric`` takes and returns: NumPy arrays or torch tensors.
FRAMEWORKS = ("numpy", "torch")


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
    bfloat16 included; torch is an optional extra).
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

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("Estimator.name must be a non-empty string")
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
