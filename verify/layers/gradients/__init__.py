"""Exact expected gradients of KL estimators used as a loss or as a reward.

The policy is q = q_theta; p does not depend on theta (shared/CLAIMS.md).  For every
mode below the gradient of one sample x is a scalar coefficient times the score
grad_theta log q_theta(x), so the expected gradient is

    G = E_{x ~ s}[ coefficient(x) * grad_theta log q_theta(x) ]

with s the sampling distribution of the mode.  G is computed without sampling:

- ``softmax``: q_theta = softmax(theta) over V outcomes, theta = the V logits.  G is
  an exact sum, done in mpmath at two precisions; their difference (plus a floor of
  the higher precision) is the error bound.
- ``normal``: q_theta = N(loc, exp(log_scale)^2), theta = (loc, log_scale).  G is a
  tanh-sinh quadrature (scipy) on intervals split where log r crosses a kink of f
  (clamps, Abs), at log r = 0 and at the zeros of the score.  The integrand is assembled
  in log space (log density + log|coefficient| + log|score|), so the tails never form
  0 * inf; where the coefficient overflows float64 it is evaluated in mpmath.  The bound
  is QUAD_SAFETY times the quadrature's error estimate plus the integral of |integrand|
  times its relative evaluation error (measured error of g, g' against mpmath, and the
  rounding of the log densities).  A quadrature that does not converge raises
  :class:`GradientUndecided`: a finding, not a number.

All gradients are compared with grad KL(q_theta||p) and grad KL(p||q_theta) at the
current theta, also in the off-policy modes.  In ``loss_is_weighted`` the surrogate is
E_{q_old}[(q_theta/q_old) f(p/q_theta)] = E_{q_theta}[f(p/q_theta)] for every theta, so
its gradient is grad_theta E_{q_theta}[f]: for k1 and k3, unbiased for KL(q||p) at every
q, it is exactly grad KL(q_theta||p), whatever q_old (with q_old > 0 where q_theta > 0).

The references grad KL(q_theta||p) and grad KL(p||q_theta) are closed forms (checked
by finite differences in tests/test_gradients.py).  ``gradient_of`` claims equality
only when the difference is within the computed error bounds.

f and r f'(r) are evaluated as functions of t = log r: g(t) = f(exp(t)) and
g'(t) = r f'(r), rewritten with expm1/log1p (sympy.codegen) so that they stay accurate
near r = 1.  This layer never imports ``verify.layers.symbolic``; the cross-check takes the
symbolic verdicts as plain data (:func:`symbolic_disagreements`).

Catalog entries (an ``Estimator`` with a ``usage``) are reported in their library's
modes (:func:`library_modes`): the score coefficient c(t, u), u = log(q_theta/q_old), is
derived symbolically from the loss the library builds (weights, detaches, a weight
inside a clamp, straight-through), then goes through the same engine (a function of t,
or exp(u) times one); a coefficient that is neither (slime's weight inside the clamp,
off-policy) is summed exactly (softmax) or integrated by mpmath.quad at two precisions
(normal), the bound being their difference plus QUAD_SAFETY times mpmath's estimate.

The modules: ``modes`` (Mode, MODES), ``pairs`` (Pair, PAIRS), ``bounds`` (precisions,
error-bound constants, GradientUndecided), ``compiled`` (g, g' and their kinks),
``references`` (the KL values and gradients), ``softmax`` (exact sums), ``normal``
(quadrature), ``verdicts`` (classify_gradient, GradientResult), ``table`` (the sweep of the
generic modes), ``usage`` and ``nonseparable`` (the library modes), ``crosscheck`` (against
the symbolic verdicts), ``mse`` (the batch-mean gradient's MSE for reports/choosing.md);
``autograd``, ``sequences`` and ``libraries`` are imported on their own.
This module only re-exports.
"""
from __future__ import annotations

from verify.core.claims import LIBRARY_MODE_NAMES
from verify.layers.gradients.bounds import GradientUndecided
from verify.layers.gradients.crosscheck import symbolic_disagreements
from verify.layers.gradients.modes import MODE_NAMES, MODES, Mode, parse_modes
from verify.layers.gradients.mse import BATCH_SIZES, softmax_gradient_mse, softmax_gradient_mse_table
from verify.layers.gradients.pairs import PAIRS, Pair
from verify.layers.gradients.references import kl_pq_value, kl_qp_value, reference_gradients
from verify.layers.gradients.table import expected_gradient, given_pairs, gradient_details, gradient_table
from verify.layers.gradients.usage import LibraryMode, library_modes, library_sweep, sweep_pairs, weight_description
from verify.layers.gradients.verdicts import GRADIENT_OF, ROW_KEYS, GradientResult, classify_gradient

__all__ = [
    "Mode", "MODES", "MODE_NAMES", "Pair", "PAIRS", "GRADIENT_OF", "ROW_KEYS",
    "GradientUndecided", "GradientResult", "expected_gradient", "reference_gradients",
    "gradient_details", "gradient_table", "given_pairs", "symbolic_disagreements", "parse_modes",
    "kl_qp_value", "kl_pq_value", "LibraryMode", "LIBRARY_MODE_NAMES", "library_modes", "library_sweep",
    "weight_description", "sweep_pairs", "classify_gradient", "BATCH_SIZES", "softmax_gradient_mse",
    "softmax_gradient_mse_table",
]
