"""kl-verify: settle claims about KL-divergence estimators.

The public API (``verify.api``, typed, results with ``to_json()``):

- ``verify.check(target, claims=None, *, timeout=None)``: verdicts for claims;
- ``verify.moments(estimator, p, q)``: exact moments for one pair (spec strings or
  frozen ``scipy.stats`` distributions);
- ``verify.gradients(target, modes=None)``: exact expected gradients per mode;
- ``verify.fuzz(target=None, dtypes=...)``: floating-point claims of implementations;
- ``verify.UsageError``: bad input (the CLI prints its one-line message, exit code 2).

What every claim, verdict and mode means: ``docs/claims.md`` (``kl-verify claims``);
how the package is built: ``docs/architecture.md``.  Importing ``verify`` is cheap:
the API loads when one of its names is first used.
"""
from __future__ import annotations

from verify.core.version import __version__
from verify.errors import UsageError

__all__ = ["__version__", "UsageError", "check", "moments", "gradients", "fuzz", "CheckResult", "MomentsResult",
           "GradientsResult", "FuzzResult", "SCHEMA_VERSION", "sequences", "SequencesResult"]

_API_NAMES = frozenset(__all__) - {"__version__", "UsageError"}


def __getattr__(name):
    """The API names, imported on first use (``import verify`` stays cheap)."""
    if name in _API_NAMES:
        from verify import api

        return getattr(api, name)
    raise AttributeError(f"module 'verify' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API_NAMES)
