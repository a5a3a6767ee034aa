"""The normal family: expected gradients by tanh-sinh quadrature, the integrand assembled in log
space, on intervals split at the kinks of f, at log r = 0 and at the zeros of the score."""
from __future__ import annotations

import math

import mpmath
import numpy as np
from scipy.integrate import tanhsinh

from verify.layers.gradients.bounds import (
    ABS_RTOL, DPS_LOW, EPS, EVAL_SCALE_FLOOR, LOG_ROUNDING_ULPS, QUAD_ATOL, QUAD_MAXLEVEL, QUAD_RTOL, QUAD_SAFETY,
    GradientUndecided)
from verify.layers.gradients.compiled import coefficient_mp
from verify.layers.gradients.modes import Mode

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_normal(x, loc, scale):
    z = (x - loc) / scale
    return -0.5 * z * z - np.log(scale) - _LOG_SQRT_2PI


def _quadratic_log_ratio(theta, p):
    """t(x) = log p(x) - log q_theta(x) = A x^2 + B x + C."""
    (m, s), (mp_, sp_) = theta, p
    v, vp = math.exp(2 * s), math.exp(2 * sp_)
    return (1 / (2 * v) - 1 / (2 * vp), mp_ / vp - m / v, s - sp_ - mp_ ** 2 / (2 * vp) + m ** 2 / (2 * v))


def _breakpoints(pair, kinks, centre):
    a, b, c = _quadratic_log_ratio(pair.theta, pair.p)
    points = {float(centre)}
    for kink in kinks:
        c0 = c - kink
        if abs(a) <= 1e-300:
            if b != 0:
                points.add(-c0 / b)
            continue
        disc = b * b - 4 * a * c0
        if disc <= 0:
            continue
        root = -(b + math.copysign(math.sqrt(disc), b)) / 2
        for x in (root / a, c0 / root if root != 0 else None):
            if x is not None and math.isfinite(x):
                points.add(x)
    return sorted(points)


def normal_rows(compiled, jobs):
    """Expected gradients for [(mode, pair)] of the normal family.

    One tanh-sinh call for the integrands (tight tolerance) and one for the integral of
    |integrand| times its relative evaluation error (loose: it is an error bound itself,
    so ABS_RTOL suffices).
    """
    elements = []  # (job index, component, a, b)
    params = []
    for index, (mode, pair) in enumerate(jobs):
        sampler = pair.theta if mode.samples_from == "q_theta" else pair.theta_old
        loc, scale = pair.theta[0], math.exp(pair.theta[1])
        # kinks of f, the zero of log r, and the zeros of the score (kinks of |integrand|)
        points = set(_breakpoints(pair, compiled.kinks + (0.0,), sampler[0]))
        points.update((loc, loc - scale, loc + scale))
        edges = [-np.inf] + sorted(points) + [np.inf]
        for component in (0, 1):
            for lo, hi in zip(edges[:-1], edges[1:]):
                elements.append((index, component, lo, hi))
                params.append((
                    loc, scale, pair.p[0], math.exp(pair.p[1]),
                    sampler[0], math.exp(sampler[1]), float(mode.importance_weight),
                    float(mode.value_score), _PATHWISE_CODES[mode.pathwise], float(component)))
    lows = np.array([e[2] for e in elements])
    highs = np.array([e[3] for e in elements])
    args = tuple(np.array(column) for column in zip(*params))

    def signed(x, *arguments):
        return _normal_integrand(compiled, x, *arguments, absolute=False)

    def absolute(x, *arguments):
        return _normal_integrand(compiled, x, *arguments, absolute=True)

    result = tanhsinh(signed, lows, highs, args=args, atol=QUAD_ATOL, rtol=QUAD_RTOL,
                      maxlevel=QUAD_MAXLEVEL)
    result_abs = tanhsinh(absolute, lows, highs, args=args, atol=QUAD_ATOL, rtol=ABS_RTOL,
                          maxlevel=QUAD_MAXLEVEL)
    for outcome in (result, result_abs):
        failed = np.nonzero(~outcome.success)[0]
        if failed.size:
            index, component, lo, hi = elements[failed[0]]
            mode, pair = jobs[index]
            raise GradientUndecided(
                f"quadrature did not converge (status {int(outcome.status[failed[0]])}) for mode "
                f"{mode.name!r}, normal/{pair.regime}, component {('loc', 'log_scale')[component]}, "
                f"interval [{lo:.6g}, {hi:.6g}]: the expected gradient may not exist")
    out = []
    for index in range(len(jobs)):
        gradient, error, total_abs = np.zeros(2), np.zeros(2), np.zeros(2)
        for k, (job, component, _, _) in enumerate(elements):
            if job == index:
                gradient[component] += result.integral[k]
                error[component] += QUAD_SAFETY * result.error[k]
                total_abs[component] += result_abs.integral[k] + result_abs.error[k]
        error += total_abs
        # where |coefficient| < EVAL_SCALE_FLOOR the evaluation error is absolute: at most
        # eval_rel * EVAL_SCALE_FLOOR times E|score| (< 2 / min(scale, 1) for both components)
        error += compiled.eval_rel * EVAL_SCALE_FLOOR * 2 / min(1.0, math.exp(jobs[index][1].theta[1]))
        out.append((gradient, float(np.linalg.norm(error))))
    return out


_PATHWISE_CODES = {"none": 0.0, "estimator": 1.0, "k2": 2.0}
_PATHWISE_NAMES = {code: name for name, code in _PATHWISE_CODES.items()}


def _normal_integrand(compiled, x, loc, scale, loc_p, scale_p, loc_s, scale_s, weighted,
                      value_score, pathwise, component, *, absolute):
    """density(x) [w(x)] coefficient(x) score(x), assembled in log space."""
    with np.errstate(all="ignore"):
        finite = np.isfinite(x)  # tanhsinh also probes the infinite endpoints
        xs = np.where(finite, x, 0.0)
        log_q = _log_normal(xs, loc, scale)
        log_p = _log_normal(xs, loc_p, scale_p)
        # s(x) w(x) = q_old(x) q_theta(x) / q_old(x): in log space the sum is log q_theta
        log_density = np.where(weighted == 1.0, log_q, _log_normal(xs, loc_s, scale_s))
        # log r = log(scale/scale_p) + (z - z_p)(z + z_p)/2: no cancellation of two large squares
        z, z_p = (xs - loc) / scale, (xs - loc_p) / scale_p
        t = np.log(scale / scale_p) + 0.5 * (z - z_p) * (z + z_p)
        coefficient = np.zeros_like(t)
        if np.any(value_score == 1.0):
            coefficient = coefficient + np.where(value_score == 1.0, compiled.g_np(t), 0.0)
        if np.any(pathwise == 1.0):
            coefficient = coefficient - np.where(pathwise == 1.0, compiled.dg_np(t), 0.0)
        coefficient = coefficient - np.where(pathwise == 2.0, t, 0.0)
        log_abs_c = np.log(np.abs(coefficient))
        sign_c = np.sign(coefficient)
        overflow = finite & np.isfinite(t) & ~np.isfinite(coefficient)
        if np.any(overflow):  # the coefficient overflows float64: evaluate it in mpmath
            value_scores = np.broadcast_to(value_score, t.shape)
            pathwises = np.broadcast_to(pathwise, t.shape)
            for i in zip(*np.nonzero(overflow)):
                mode = Mode("", "", False, bool(value_scores[i]), _PATHWISE_NAMES[float(pathwises[i])], "")
                try:
                    with mpmath.workdps(DPS_LOW):
                        exact = coefficient_mp(compiled, mode, mpmath.mpf(float(t[i])))
                        log_abs_c[i] = float(mpmath.log(abs(exact))) if exact != 0 else -np.inf
                        sign_c[i] = float(mpmath.sign(exact))
                except (MemoryError, OverflowError):  # reported as non-finite: undecided
                    log_abs_c[i], sign_c[i] = np.inf, 1.0
        score = np.where(component == 0.0, z / scale, z * z - 1.0)
        value = np.exp(log_density + log_abs_c + np.log(np.abs(score)))
        if absolute:
            # the rounding of the log densities and of t grows with their size: weight
            # |integrand| by its relative rounding error (see LOG_ROUNDING_ULPS)
            value = value * (compiled.eval_rel + LOG_ROUNDING_ULPS * EPS * (
                1.0 + np.abs(log_q) + np.abs(log_p) + np.abs(log_density)))
        else:
            value = value * sign_c * np.sign(score)
        return np.where(finite & (log_density > -np.inf) & ~np.isnan(value), value, 0.0)
