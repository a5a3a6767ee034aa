"""kl-verify: settle claims about KL-divergence estimators.

Layers (each independent of the others' conclusions):
- ``verify.symbolic``: sympy proofs and certified refutations in r = p/q;
- ``verify.exact``: exact moments by quadrature and exact sums;
- ``verify.floating``: the numeric implementation in four float dtypes;
- ``verify.gradients``: exact expected gradients as a loss or a reward.
"""

class UsageError(Exception):
    """Bad input from the user: the CLI prints one line and exits with code 2."""
