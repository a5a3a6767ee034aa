"""Distribution families for the exact layer, and a safe parser for their specs.

A spec is one call in Python syntax, parametrized as in ``scipy.stats``:
``norm(loc, scale)``, ``laplace(loc, scale)``, ``t(df, loc, scale)``,
``gamma(a, loc, scale)``, ``beta(a, b)``, ``poisson(mu)``, ``categorical(logits=[...])``
or ``categorical(logits=@path.npy)``, and ``mixture(weights=[...], components=[...])``
of continuous families on one support.  The spec is parsed by ``ast`` and walked
against a whitelist; nothing reaches eval.

Each family gives its log-density together with a bound on the absolute rounding
error of that log-density (``ERROR_ULPS`` ulps of the sum of the magnitudes of the
terms, which also covers evaluating at the rounded quadrature node).
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verify.core.dtypes import EPS
from verify.core.specs import spec_syntax
from verify.errors import UsageError

__all__ = ["Family", "parse_family", "Point", "same_support", "common_support", "mass_outside", "cdf", "FAMILY_NAMES"]

# Ulps of the term magnitudes allowed for a log-density: each term is a handful of
# correctly rounded operations plus gammaln/betaln (scipy: within ~1e-15 relative).
ERROR_ULPS = 16.0
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
MAX_LIST = 200_000
MAX_COMPONENTS = 64
MAX_VOCABULARY = 10_000_000
MAX_DEPTH = 3


@dataclass
class Point:
    """A quadrature node in every coordinate a family may need, consistent with each other.

    ``x`` on the real line; for a half-line support ``y = x - base`` and ``log_y``; for
    (0, 1) ``log_x`` and ``log_1mx`` computed from the mapped variable without forming 1 - x.
    """

    x: np.ndarray
    y: np.ndarray | None = None
    log_y: np.ndarray | None = None
    log_x: np.ndarray | None = None
    log_1mx: np.ndarray | None = None
    u: np.ndarray | None = None
    base: float | None = None  # the half-line's base that y is measured from


@dataclass(frozen=True, eq=False)
class Family:
    """One distribution: its name, parameters, canonical spec and support."""

    name: str
    params: dict
    spec: str
    support: str  # "real", "halfline(<base>)", "unit", "counts", "categorical(<n>)"
    components: tuple = ()
    weights: tuple = ()
    logits: np.ndarray | None = field(default=None, repr=False)
    # a categorical restricted to part of its vocabulary keeps the full normalizer
    log_normalizer: float | None = None

    @property
    def discrete(self) -> bool:
        return self.name in ("poisson", "categorical")

    # --- continuous ---------------------------------------------------------------
    def logpdf(self, point: Point):
        """(log-density at the point, bound on its absolute error)."""
        n = self.name
        P = self.params
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if n == "norm":
                z = (point.x - P["loc"]) / P["scale"]
                log_scale = math.log(P["scale"])
                value = -0.5 * z * z - log_scale - LOG_SQRT_2PI
                size = z * z + np.abs(z) * np.abs(point.x) / P["scale"] + abs(log_scale) + 1
                return value, ERROR_ULPS * EPS * size
            if n == "laplace":
                z = np.abs(point.x - P["loc"]) / P["scale"]
                log_norm = math.log(2 * P["scale"])
                value = -z - log_norm
                size = z + np.abs(point.x) / P["scale"] + abs(log_norm) + 1
                return value, ERROR_ULPS * EPS * size
            if n == "t":
                df = P["df"]
                z = (point.x - P["loc"]) / P["scale"]
                az = np.abs(z)
                big = az > 1e100
                zs = np.where(big, 1.0, z)
                log_kernel = np.where(big, 2 * np.log(np.where(big, az, 1.0)) - math.log(df),
                                      np.log1p(zs * zs / df))
                const = (special.gammaln((df + 1) / 2) - special.gammaln(df / 2)
                         - 0.5 * math.log(df * math.pi) - math.log(P["scale"]))
                value = const - (df + 1) / 2 * log_kernel
                # |d log pdf / dz| = (df + 1) |z| / (df + z^2) <= (df + 1) / |z| for huge |z|
                slope = np.where(big, (df + 1) / np.where(big, az, 1.0), (df + 1) * az / (df + zs * zs))
                size = (abs(special.gammaln((df + 1) / 2)) + abs(special.gammaln(df / 2))
                        + abs(math.log(df * math.pi)) + abs(math.log(P["scale"]))
                        + (df + 1) / 2 * np.abs(log_kernel)
                        + slope * (1 + np.abs(point.x) / P["scale"]) + 1)
                return value, ERROR_ULPS * EPS * size
            if n == "gamma":
                a, scale = P["a"], P["scale"]
                log_scale = math.log(scale)
                if point.y is not None and point.base == P["loc"]:
                    y, log_y, coord_err = point.y, point.log_y, 0.0
                else:
                    # on another family's support (inside this one's): y from x, away from the base
                    y = point.x - P["loc"]
                    y = np.where(y > 0, y, np.nan)
                    log_y = np.log(y)
                    coord_err = (np.abs(point.x) + abs(P["loc"])) / y * EPS * abs(a - 1)
                y_scaled = y / scale
                value = (a - 1) * (log_y - log_scale) - y_scaled - special.gammaln(a) - log_scale
                size = (abs(a - 1) * (np.abs(log_y) + abs(log_scale)) + y_scaled
                        + abs(special.gammaln(a)) + abs(log_scale)
                        + (abs(a - 1) + y_scaled) * (1 + np.abs(log_y)) + 1)
                return value, ERROR_ULPS * EPS * size + coord_err
            if n == "beta":
                a, b = P["a"], P["b"]
                betaln = special.betaln(a, b)
                value = (a - 1) * point.log_x + (b - 1) * point.log_1mx - betaln
                size = (abs(a - 1) * np.abs(point.log_x) + abs(b - 1) * np.abs(point.log_1mx)
                        + abs(betaln) + (abs(a - 1) + abs(b - 1)) * (1 + np.abs(point.u)) + 1)
                return value, ERROR_ULPS * EPS * size
            if n == "mixture":
                parts = [c.logpdf(point) for c in self.components]
                terms = np.stack([math.log(w) + v for w, (v, _) in zip(self.weights, parts)])
                value = special.logsumexp(terms, axis=0)
                # d logsumexp / d v_i is the component's share: a negligible component's
                # (possibly huge) error counts only through its share
                shares = np.exp(terms - value)
                errs = np.stack([e for _, e in parts])
                err = np.sum(np.where(shares > 0, shares * errs, 0.0), axis=0) * (1 + 1e-6)
                # logsumexp = max + log(sum exp(terms - max)): rounds on the scale of the largest term
                size = np.abs(value) + np.abs(np.max(terms, axis=0)) + len(parts)
                return value, err + ERROR_ULPS * EPS * size
        raise AssertionError(n)

    # --- discrete -------------------------------------------------------------------
    def logpmf(self, k=None):
        """(log-probabilities, error bound) at counts k (poisson) or of every category."""
        if self.name == "poisson":
            mu = self.params["mu"]
            k = np.asarray(k, dtype=np.float64)
            log_factorial = special.gammaln(k + 1)
            value = k * math.log(mu) - mu - log_factorial
            size = k * abs(math.log(mu)) + mu + log_factorial + 1
            return value, ERROR_ULPS * EPS * size
        if self.name == "categorical":
            cached = self.__dict__.get("_log_probabilities")
            if cached is not None and cached[0] is self.logits:
                return cached[1]
            logits = self.logits
            finite = np.isfinite(logits)
            normalizer = (self.log_normalizer if self.log_normalizer is not None
                          else special.logsumexp(logits[finite]))
            value = logits - normalizer
            size = np.where(finite, np.abs(logits), 0.0) + abs(normalizer) + math.log(len(logits)) + 1
            result = (value, np.where(finite, ERROR_ULPS * EPS * size, 0.0))
            object.__setattr__(self, "_log_probabilities", (logits, result))  # a cache, not state
            return result
        raise AssertionError(self.name)

    # --- where the mass is (for quadrature breakpoints) ------------------------------
    def locations(self):
        """(location, scale) of each continuous component."""
        if self.name == "mixture":
            return [pair for c in self.components for pair in c.locations()]
        P = self.params
        if self.name in ("norm", "laplace", "t"):
            return [(P["loc"], P["scale"])]
        if self.name == "gamma":
            return [(P["loc"] + P["a"] * P["scale"], P["scale"] * math.sqrt(P["a"]))]
        if self.name == "beta":
            a, b = P["a"], P["b"]
            return [(a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))]
        return []


def _interval(support):
    if support == "real":
        return (-math.inf, math.inf)
    if support == "unit":
        return (0.0, 1.0)
    if support.startswith("halfline"):
        return (float(support[len("halfline("):-1]), math.inf)
    return None


def _support_of(interval):
    lo, hi = interval
    if lo == -math.inf and hi == math.inf:
        return "real"
    if hi == math.inf:
        return f"halfline({_number_text(lo)})"
    if (lo, hi) == (0.0, 1.0):
        return "unit"
    return None


def common_support(p: Family, q: Family):
    """The support the pair is integrated or summed over (where both can be positive), or
    None when it is empty; UsageError for pairs the engine cannot take."""
    if p.discrete or q.discrete:
        if p.support != q.support:
            raise UsageError(
                f"p and q must both be poisson or both categoricals of one size (p: {p.spec} on {p.support}; "
                f"q: {q.spec} on {q.support})")
        return p.support
    a, b = _interval(p.support), _interval(q.support)
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    if lo >= hi:
        return None
    support = _support_of((lo, hi))
    if support is None:
        raise UsageError(f"the supports of p ({p.spec}) and q ({q.spec}) overlap on ({lo!r}, {hi!r}), "
                         "which the engine does not integrate over (only the real line, a half-line or (0, 1))")
    return support


def same_support(p: Family, q: Family) -> None:
    """UsageError for a pair the engine cannot take (kept for callers; supports may differ)."""
    common_support(p, q)


def cdf(family: Family, x: float) -> float:
    """P(X <= x) for a continuous family (scipy.special; within ~1e-15 relative)."""
    n, P = family.name, family.params
    if n == "mixture":
        return math.fsum(w * cdf(c, x) for w, c in zip(family.weights, family.components))
    if math.isinf(x):
        return 0.0 if x < 0 else 1.0
    if n == "norm":
        return float(special.ndtr((x - P["loc"]) / P["scale"]))
    if n == "laplace":
        z = (x - P["loc"]) / P["scale"]
        return 0.5 * math.exp(z) if z < 0 else 1 - 0.5 * math.exp(-z)
    if n == "t":
        return float(special.stdtr(P["df"], (x - P["loc"]) / P["scale"]))
    if n == "gamma":
        return float(special.gammainc(P["a"], max(x - P["loc"], 0.0) / P["scale"]))
    if n == "beta":
        return float(special.betainc(P["a"], P["b"], min(max(x, 0.0), 1.0)))
    raise ValueError(n)


def mass_outside(family: Family, support) -> float:
    """The family's probability outside ``support`` (None: everywhere)."""
    if support is None:
        return 1.0
    lo, hi = _interval(support)
    own_lo, own_hi = _interval(family.support)
    below = cdf(family, lo) if lo > own_lo else 0.0
    above = 1.0 - cdf(family, hi) if hi < own_hi else 0.0
    return below + above


# ------------------------------------------------------------------------------------
# parsing

_SIGNATURES = {
    "norm": (("loc", 0.0), ("scale", 1.0)),
    "laplace": (("loc", 0.0), ("scale", 1.0)),
    "t": (("df", None), ("loc", 0.0), ("scale", 1.0)),
    "gamma": (("a", None), ("loc", 0.0), ("scale", 1.0)),
    "beta": (("a", None), ("b", None)),
    "poisson": (("mu", None),),
    "categorical": (("logits", None),),
    "mixture": (("weights", None), ("components", None)),
}
FAMILY_NAMES = tuple(_SIGNATURES)
_POSITIVE_PARAMETERS = {"scale", "df", "a", "b", "mu"}


class _LazySpecial:
    """scipy.special, imported on first use: reading a spec needs none of it."""

    def __getattr__(self, name):
        from scipy import special as module

        return getattr(module, name)


special = _LazySpecial()


def _fail(message):
    raise UsageError(f"bad distribution spec: {message}")


def _number(node, allow_minus_inf=False):
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _number(node.operand, allow_minus_inf)
        return -value if isinstance(node.op, ast.USub) else value
    if allow_minus_inf and isinstance(node, ast.Name) and node.id == "inf":
        return math.inf
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        value = float(node.value)
        if not math.isfinite(value):
            _fail(f"{node.value!r} is not a finite number")
        return value
    _fail(f"expected a number, got {ast.unparse(node)[:40]!r}")


def _number_list(node, what, allow_minus_inf=False):
    if not isinstance(node, (ast.List, ast.Tuple)):
        _fail(f"{what} must be a list of numbers")
    if len(node.elts) > MAX_LIST:
        _fail(f"{what} has more than {MAX_LIST} entries (use logits=@file.npy)")
    if not node.elts:
        _fail(f"{what} is empty")
    return [_number(e, allow_minus_inf) for e in node.elts]


def _load_logits(path_text):
    path = Path(path_text)
    if path.suffix != ".npy":
        _fail(f"logits file must be a .npy file, got {path_text!r}")
    if not path.is_file():
        _fail(f"no such file: {path_text}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is bad input
        _fail(f"cannot read {path_text}: {type(error).__name__}")
    if array.ndim != 1 or array.dtype.kind not in "fiu":
        _fail(f"{path_text} must hold a 1-D array of real numbers")
    if not 1 <= array.size <= MAX_VOCABULARY:
        _fail(f"{path_text} must hold 1 to {MAX_VOCABULARY} logits")
    return np.asarray(array, dtype=np.float64)


def _number_text(value):
    return repr(float(value))


def _build_family(node, depth, files) -> Family:
    if depth > MAX_DEPTH:
        _fail("nested too deeply")
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        _fail(f"expected a call like norm(0, 1), got {ast.unparse(node)[:40]!r}")
    name = node.func.id
    if name not in _SIGNATURES:
        _fail(f"unknown family {name!r}; known: {', '.join(FAMILY_NAMES)}")
    signature = _SIGNATURES[name]
    names = [n for n, _ in signature]
    if len(node.args) > len(signature):
        _fail(f"{name}() takes at most {len(signature)} positional arguments")
    given = {}
    for arg_name, arg in zip(names, node.args):
        given[arg_name] = arg
    for keyword in node.keywords:
        if keyword.arg is None or keyword.arg not in names:
            _fail(f"{name}() has no parameter {keyword.arg!r}; parameters: {', '.join(names)}")
        if keyword.arg in given:
            _fail(f"{name}() got {keyword.arg!r} twice")
        given[keyword.arg] = keyword.value
    for arg_name, default in signature:
        if arg_name not in given and default is None:
            _fail(f"{name}() needs {arg_name!r}")

    if name == "categorical":
        value = given["logits"]
        if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value in files:
            path_text = files[value.value]
            logits = _load_logits(path_text)
            shown = f"@{path_text}"
        else:
            logits = np.array(_number_list(value, "logits", allow_minus_inf=True), dtype=np.float64)
            shown = "[" + ", ".join(_number_text(v) for v in logits) + "]"
        if np.any(np.isnan(logits)) or np.any(logits == np.inf):
            _fail("logits must be finite numbers or -inf (an impossible token)")
        finite = logits[np.isfinite(logits)]
        if finite.size == 0:
            _fail("at least one logit must be finite")
        if np.ptp(finite) > 700:
            _fail("finite logits span more than 700 nats: probabilities below 1e-304 are not supported")
        return Family("categorical", {}, f"categorical(logits={shown})", f"categorical({logits.size})",
                      logits=logits)

    if name == "mixture":
        weights = _number_list(given["weights"], "weights")
        comps = given["components"]
        if not isinstance(comps, (ast.List, ast.Tuple)) or not comps.elts:
            _fail("components must be a non-empty list of families")
        if len(comps.elts) > MAX_COMPONENTS:
            _fail(f"at most {MAX_COMPONENTS} components")
        components = tuple(_build_family(c, depth + 1, files) for c in comps.elts)
        if len(weights) != len(components):
            _fail(f"{len(weights)} weights for {len(components)} components")
        if any(not (w > 0) for w in weights):
            _fail("weights must be positive")
        for c in components:
            if c.discrete:
                _fail("mixture components must be continuous families")
        supports = {c.support for c in components}
        if len(supports) != 1:
            _fail(f"mixture components must share one support, got {', '.join(sorted(supports))}")
        total = math.fsum(weights)
        if abs(total - 1) > 1e-12:
            _fail(f"weights must sum to 1 (they sum to {total!r})")
        weights = tuple(w / total for w in weights)
        spec = (f"mixture(weights=[{', '.join(_number_text(w) for w in weights)}], "
                f"components=[{', '.join(c.spec for c in components)}])")
        return Family("mixture", {}, spec, components[0].support, components=components, weights=weights)

    params = {}
    for arg_name, default in signature:
        params[arg_name] = _number(given[arg_name]) if arg_name in given else default
        if arg_name in _POSITIVE_PARAMETERS and not params[arg_name] > 0:
            _fail(f"{name}() needs {arg_name} > 0, got {params[arg_name]!r}")
        if abs(params[arg_name]) > 1e12 or (arg_name in _POSITIVE_PARAMETERS and params[arg_name] < 1e-12):
            _fail(f"{name}() parameter {arg_name}={params[arg_name]!r} is outside [1e-12, 1e12] in size")
    if name in ("t",) and params["df"] < 0.05:
        _fail("t() needs df >= 0.05")
    if name in ("gamma", "beta") and any(params[k] < 0.05 for k in ("a", "b") if k in params):
        _fail(f"{name}() needs shape parameters >= 0.05")
    if name == "poisson" and params["mu"] > 1e6:
        _fail("poisson() needs mu <= 1e6")
    spec = f"{name}(" + ", ".join(f"{k}={_number_text(v)}" for k, v in params.items()) + ")"
    if name in ("norm", "laplace", "t"):
        support = "real"
    elif name == "gamma":
        support = f"halfline({_number_text(params['loc'])})"
    elif name == "beta":
        support = "unit"
    else:
        support = "counts"
    return Family(name, params, spec, support)


def parse_family(spec: str) -> Family:
    """The Family a spec names; UsageError (one line) for anything else."""
    tree, files = spec_syntax(spec)
    try:
        return _build_family(tree.body, 0, files)
    except RecursionError:
        _fail("nested too deeply")
