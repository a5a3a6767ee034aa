"""A scoped switch-off of hypothesis's pool of "local" constants, for our own searches.

Why it exists: hypothesis (since 6.131) mixes into its draws numeric constants found in
the source of every "local" module loaded at the time (sys.modules).  The examples of a
derandomized search then depend on what else the process imported: under pytest, or
after another layer ran in the same worker, ``verify all`` found a different worst
error than alone, and the committed reports went stale.  Within our own searches the
local pool is empty (hypothesis's global constants stay), so the examples depend only
on the seed and the hypothesis version.

Why a patch: hypothesis has no setting, environment variable or public hook for that
pool (6.170.17: ``HypothesisProvider._local_constants`` calls the module function
``providers._get_local_constants``; a custom ``backend`` would change the search
itself).  So the function is replaced for the duration of the ``with`` block only, and
restored on exit (also on an exception), with hypothesis's cache of the pool's filtered
constants cleared on entry and on exit.  A hypothesis without the pool is left as it is.
"""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def without_local_constants():
    """Inside the block, hypothesis draws no constants from the loaded local modules."""
    try:
        from hypothesis.internal.conjecture import providers
        pool_of, empty = providers._get_local_constants, providers.Constants()
        forget_filtered_pools = providers.CONSTANTS_CACHE.cache.clear  # computed with the local constants
    except (ImportError, AttributeError):  # an older or newer hypothesis: nothing to neutralise
        yield
        return
    forget_filtered_pools()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = pool_of
        forget_filtered_pools()
