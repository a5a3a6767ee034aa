"""The exact layer: moments of estimators by quadrature and exact sums (no sampling).

Independent of the symbolic layer: it never imports ``verify.layers.symbolic``.
"""
from verify.layers.exact.families import Family, parse_family
from verify.layers.exact.integral import ExactError
from verify.layers.exact.moments import Moments, closed_form_kl, kl_divergences, moments
from verify.layers.exact.sweeps import SWEEP_FAMILIES, sweep, sweep_moments
from verify.layers.exact.reproductions import reproductions

__all__ = ["Family", "parse_family", "ExactError", "Moments", "moments", "kl_divergences",
           "closed_form_kl", "SWEEP_FAMILIES", "sweep", "sweep_moments", "reproductions"]
