"""kl-verify: settle claims about KL-divergence estimators.

The public API (implemented in ``verify.api``, typed, results with ``to_json()``):

- ``verify.check(target, claims=None, *, timeout=None)``: verdicts for claims;
- ``verify.moments(estimator, p, q)``: exact moments for one pair (spec strings or
  frozen ``scipy.stats`` distributions);
- ``verify.gradients(target, modes=None)``: exact expected gradients per mode;
- ``verify.fuzz(target=None, dtypes=...)``: floating-point claims of implementations;
- ``verify.UsageError``: bad input (the CLI prints its one-line message, exit code 2).

What every claim, verdict and mode means: ``docs/claims.md`` (``kl-verify claims``).
Layers (each independent of the others' conclusions): ``verify.symbolic``,
``verify.exact``, ``verify.floating``, ``verify.gradients``.  Importing ``verify`` is
cheap: the layers load when first used.
"""
from __future__ import annotations

import sys
import types

__version__ = "0.2.0"

__all__ = ["__version__", "UsageError", "check", "moments", "gradients", "fuzz", "CheckResult", "MomentsResult",
           "GradientsResult", "FuzzResult", "SCHEMA_VERSION"]


class UsageError(Exception):
    """Bad input from the user: the CLI prints one line and exits with code 2."""


_API_NAMES = frozenset(__all__) - {"__version__", "UsageError", "gradients"}


class _CallableModule(types.ModuleType):
    """``verify.gradients`` is both the gradient layer (a module) and the API function:
    calling the module calls ``verify.api.gradients``."""

    def __call__(self, *args, **kwargs):
        from verify.api import gradients

        return gradients(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name == "gradients" and isinstance(value, types.ModuleType) and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


def __getattr__(name):
    """The API names, imported on first use (``import verify`` stays cheap)."""
    if name in _API_NAMES:
        from verify import api

        return getattr(api, name)
    if name == "gradients":
        import importlib

        return importlib.import_module("verify.gradients")
    raise AttributeError(f"module 'verify' has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
