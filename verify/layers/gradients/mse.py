"""The exact mean squared error of a batch-mean gradient on the softmax pairs, for the
rankings of reports/choosing.md (the term used as a loss, or its value as a REINFORCE
reward).

The mean over a batch of n samples estimates grad KL with MSE_n = |E g - grad KL|^2 +
tr Cov(g) / n, where tr Cov(g) = sum_x q_x c_x^2 |e_x - q|^2 - |E g|^2.  Everything is
an exact finite sum, done in mpmath at two precisions: their difference, plus a floor
relative to the size of the terms, is the error bound.
"""
from __future__ import annotations

from verify.core.dtypes import EPS
from verify.layers.gradients.bounds import DPS_HIGH, DPS_LOW, EXACT_SUM_FLOOR
from verify.layers.gradients.pairs import PAIRS

MSE_MODES = ("loss", "reward")
BATCH_SIZES = (1, 64, 4096)  # the n of a batch mean compared in reports/choosing.md
ROUNDING_ULPS = 8  # rounding of the few float64 operations that form an MSE from the sums


def _coefficient_function(expr, mode="loss"):
    """t -> c at r = exp(t), in mpmath: -r f'(r) (loss) or f(r) (reward); clamps and Abs
    are split into pieces first."""
    import sympy as sp

    from verify.core.expression import RATIO

    if mode not in MSE_MODES:
        raise ValueError(f"no softmax MSE for mode {mode!r}")
    t = sp.Symbol("t", real=True)
    piecewise = expr.rewrite(sp.Piecewise) if expr.has(sp.Min, sp.Max, sp.Abs) else expr
    in_t = piecewise.xreplace({RATIO: sp.exp(t)})
    if mode == "reward":
        return sp.lambdify(t, in_t, "mpmath")
    slope = sp.diff(in_t, t)
    if slope.has(sp.Derivative, sp.Subs):
        raise ValueError(f"cannot differentiate {expr}")
    return sp.lambdify(t, -slope, "mpmath")


def _softmax_mse_at(coefficient_of, theta, p_logits, n_values, dps):
    import mpmath

    with mpmath.workdps(dps):
        def log_softmax(logits):
            logits = [mpmath.mpf(v) for v in logits]
            top = max(logits)
            total = mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in logits)) + top
            return [v - total for v in logits]

        logq, logp = log_softmax(theta), log_softmax(p_logits)
        q, p = [mpmath.exp(v) for v in logq], [mpmath.exp(v) for v in logp]
        size = len(q)
        log_ratio = [b - a for a, b in zip(logq, logp)]
        coefficient = [mpmath.mpf(coefficient_of(t)) for t in log_ratio]  # g(x) = c_x (e_x - q)

        def expectation(weights):  # sum_x q_x w_x (e_x - q)
            total = mpmath.fsum(qx * wx for qx, wx in zip(q, weights))
            return [q[i] * weights[i] - q[i] * total for i in range(size)]

        gradient = expectation(coefficient)
        references = {"kl_qp": expectation([-t for t in log_ratio]),      # E_q[(log q - log p) grad log q]
                      "kl_pq": [q[i] - p[i] for i in range(size)]}          # -E_p[grad log q]
        sum_q2 = mpmath.fsum(v * v for v in q)
        second = mpmath.fsum(q[x] * coefficient[x] ** 2 * (1 - 2 * q[x] + sum_q2) for x in range(size))
        trace = second - mpmath.fsum(v * v for v in gradient)
        scale = second + mpmath.fsum(v * v for v in gradient)
        out = {}
        for target, reference in references.items():
            bias2 = mpmath.fsum((a - b) ** 2 for a, b in zip(gradient, reference))
            out[target] = {n: bias2 + trace / n for n in n_values}
            scale += mpmath.fsum(v * v for v in reference)
        return out, scale


def softmax_gradient_mse(expr, theta, p_logits, n_values=BATCH_SIZES, mode="loss") -> dict:
    """target -> n -> (MSE of the batch-mean gradient against grad KL(target), bound), the
    term used as a loss (``mode="loss"``) or its value as a REINFORCE reward (``"reward"``)."""
    coefficient_of = _coefficient_function(expr, mode)
    high, scale = _softmax_mse_at(coefficient_of, theta, p_logits, n_values, DPS_HIGH)
    low, _ = _softmax_mse_at(coefficient_of, theta, p_logits, n_values, DPS_LOW)
    out = {}
    for target in high:
        out[target] = {}
        for n in n_values:
            value = float(high[target][n])
            error = float(abs(high[target][n] - low[target][n])) + float(scale) * EXACT_SUM_FLOOR + ROUNDING_ULPS * EPS * value
            out[target][n] = (value, error)
    return out


def softmax_gradient_mse_table(expr, mode="loss") -> dict:
    """regime -> target -> str(n) -> [MSE, bound] for one estimator on the gradient layer's
    softmax pairs (None for a regime where f cannot be differentiated or evaluated)."""
    out: dict = {}
    for pair in (p for p in PAIRS if p.family == "softmax"):
        try:
            values = softmax_gradient_mse(expr, pair.theta, pair.p, mode=mode)
        except (ValueError, TypeError, ZeroDivisionError, OverflowError):
            out[pair.regime] = None
            continue
        out[pair.regime] = {target: {str(n): list(values[target][n]) for n in BATCH_SIZES} for target in values}
    return out
