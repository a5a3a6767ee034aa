"""Central finite differences in mpmath, shared by the gradient tests (an oracle independent
of verify.layers.gradients): the error is O(step^2) relative, the rounding error 10^-dps / step."""
import mpmath
import numpy as np


def central_difference(objective, theta0, step):
    """The gradient of ``objective`` (a list of mpf in, an mpf out) at ``theta0``, as floats."""
    gradient = []
    for i in range(len(theta0)):
        up, down = list(theta0), list(theta0)
        up[i] += step
        down[i] -= step
        gradient.append(float((objective(up) - objective(down)) / (2 * mpmath.mpf(step))))
    return np.array(gradient)
