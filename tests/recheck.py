"""Independent re-checks of the symbolic layer's counterexamples.

This deliberately shares nothing with ``verify.layers.symbolic`` or ``verify.layers.symbolic.certified``: it
evaluates the expression with mpmath at 60 digits through sympy's lambdify and checks
each counterexample against the claim's definition in shared/CLAIMS.md.
"""
from fractions import Fraction

import mpmath
import sympy as sp

from verify.core.expression import RATIO

DIGITS = 60
MARGIN = mpmath.mpf(10) ** -40  # far above the 60-digit evaluation error, far below any real effect


def function(expr):
    """f at a point, at DIGITS; a value within MARGIN of 0 is evaluated again at 1500
    digits, where a term like 1e-400 still shows."""
    fast = sp.lambdify(RATIO, expr, modules="mpmath")

    def f(x):
        value = fast(x)
        if abs(value) <= MARGIN:
            with mpmath.workdps(1500):
                value = fast(+x)
        return value
    return f


def _ratio(value):
    """A ratio as printed: a float, an exact decimal or fraction string, or "2**k"."""
    if not isinstance(value, str):
        return mpmath.mpf(value)
    if value.startswith("2**"):
        return mpmath.ldexp(mpmath.mpf(1), int(value[3:]))
    return mpmath.mpf(Fraction(value).numerator) / Fraction(value).denominator


def recheck(expr, claim, example) -> bool:
    """True when the counterexample really refutes the claim."""
    with mpmath.workdps(DIGITS):
        f = function(expr)
        if "reason" in example:  # f undefined at r: the named sub-expression breaks its condition
            point = sp.Rational(example["exact_r"]) if "/" in example["exact_r"] or example["exact_r"].isdigit() \
                else sp.sympify(example["exact_r"])
            sub_expression = sp.sympify(example["subexpression"], locals={"r": RATIO})
            value = sp.N(sub_expression.xreplace({RATIO: point}), 40)
            return {"positive": value <= 0, "nonnegative": value < 0, "nonzero": value == 0}[example["must_be"]]
        if claim == "zero_at_one":
            return sp.N(expr.xreplace({RATIO: sp.S.One}), DIGITS) != 0
        if claim == "nonnegative":
            return f(_ratio(example["r"])) < 0
        if claim == "unique_minimum_at_one":
            return f(_ratio(example["r"])) <= f(mpmath.mpf(1)) + MARGIN and _ratio(example["r"]) != 1
        if claim == "convex":
            a, b = (_ratio(x) for x in example["r"])
            return f((a + b) / 2) - (f(a) + f(b)) / 2 > MARGIN
        if claim in ("unbiased_kl_qp", "unbiased_kl_pq"):
            q = [_ratio(x) for x in example["q"]]
            p = [_ratio(x) for x in example["p"]]
            assert abs(sum(q) - 1) < MARGIN and abs(sum(p) - 1) < MARGIN
            with mpmath.workdps(1500):  # a bias may be tiny (f(1) = -1e-400): look closely
                q = [_ratio(x) for x in example["q"]]
                p = [_ratio(x) for x in example["p"]]
                mean = sum(qi * f(pi / qi) for pi, qi in zip(p, q))
                kl = (sum(qi * mpmath.log(qi / pi) for pi, qi in zip(p, q)) if claim == "unbiased_kl_qp"
                      else sum(pi * mpmath.log(pi / qi) for pi, qi in zip(p, q)))
                return abs(mean - kl) > mpmath.mpf(10) ** -1400
        if claim in ("loss_grad_zero", "loss_grad_kl_qp", "loss_grad_kl_pq", "reward_grad_kl_qp"):
            def h(x):
                slope = mpmath.diff(f, x, h=x * mpmath.mpf(10) ** -20)  # a step relative to x: x may be 2**-300
                return {"loss_grad_zero": x * slope, "loss_grad_kl_qp": x * slope - mpmath.log(x),
                        "loss_grad_kl_pq": x * slope - x, "reward_grad_kl_qp": f(x) + mpmath.log(x)}[claim]
            a, b = (_ratio(x) for x in example["r"])
            return abs(h(a) - h(b)) > mpmath.mpf(10) ** -20
        if claim == "locally_unbiased":
            x = mpmath.mpf(1)
            if sp.N(expr.xreplace({RATIO: sp.S.One}), DIGITS) != 0:
                return True
            left = mpmath.diff(f, x, 1, direction=-1, h=mpmath.mpf(10) ** -20)
            right = mpmath.diff(f, x, 1, direction=1, h=mpmath.mpf(10) ** -20)
            if abs(left - right) > mpmath.mpf(10) ** -10:
                return True
            return abs(mpmath.diff(f, x, 2) - 1) > mpmath.mpf(10) ** -10
        if claim in ("subexponential_growth", "linear_growth_in_log_ratio"):
            if "r" not in example:
                return False  # no finite witness: nothing to re-check
            text = str(example["r"])
            x = mpmath.exp(mpmath.mpf(text[4:-1])) if text.startswith("exp(") else _ratio(example["r"])
            k = 1 if claim == "linear_growth_in_log_ratio" else 8
            return abs(f(x)) > 10 * (1 + abs(mpmath.log(x)) ** k)
        raise AssertionError(f"no re-check for {claim}")
