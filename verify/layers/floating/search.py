"""The float32/float64 search: its sizes per profile, and hypothesis steered towards
the worst error (``verify.strategies.log_prob_pairs`` with ``hypothesis.target``)."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings, target

from verify.layers.floating.dtype_run import DtypeRun
from verify.layers.floating.local_constants import without_local_constants
from verify.strategies import log_prob_pairs

# Sizes of the float32/float64 search (16-bit dtypes are always enumerated), per profile
# (verify.core.claims.PROFILES):
# max_examples: hypothesis examples per estimator and dtype; band: log-spaced |log r| in
# the cancellation band [1e-8, 0.3]; binade_points: values per binade of |log r|;
# binade_step: every binade (1) or every k-th (dev);
# anchors x deltas: the anchor grid.
PROFILE_SIZES = {
    "dev": {"max_examples": 60, "band": 100, "binade_points": 2, "binade_step": 8, "anchors": 8, "deltas": 12},
    "ci": {"max_examples": 250, "band": 400, "binade_points": 2, "binade_step": 1, "anchors": 16, "deltas": 30},
    "thorough": {"max_examples": 3000, "band": 3000, "binade_points": 3, "binade_step": 1, "anchors": 60,
                 "deltas": 120},
}
_HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
settings.register_profile("kl_verify_dev", max_examples=60, deadline=None, database=None,
                          suppress_health_check=_HEALTH)
settings.register_profile("kl_verify_ci", max_examples=250, deadline=None, database=None,
                          derandomize=True, suppress_health_check=_HEALTH, print_blob=False)
settings.register_profile("kl_verify_thorough", max_examples=3000, deadline=None, database=None,
                          suppress_health_check=_HEALTH)


def hypothesis_search(run: DtypeRun, profile: str, bounds: tuple[float, float] | None = None):
    """``bounds``: the finite (low, high) of the domain in the dtype (None: the default domain)."""
    strategy = log_prob_pairs(dtype=run.info.name, **({"low": bounds[0], "high": bounds[1]} if bounds else {}))

    @settings(settings.get_profile(f"kl_verify_{profile}"))
    @given(strategy)
    def search(pair):
        logp, logq = pair
        value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
        run.sources["hypothesis"] += 1
        in_ulps = run.check_point(logp, logq, value)
        target(_finite_score(in_ulps), label="error in ulps")
        target(_finite_score(-value), label="negativity")

    with without_local_constants():
        search()


def _finite_score(score: float) -> float:
    return 1e300 if math.isnan(score) else max(min(score, 1e300), -1e300)
