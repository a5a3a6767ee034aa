"""The API's reading of its inputs: targets, claims, dtypes, modes, options and
distributions, each checked once here with the one-line message the CLI prints.  A
user's file or module is imported in an isolated worker (``verify.api.isolation``)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from verify.core.claims import (DTYPES, EXIT_OK, EXIT_UNDECIDED, EXPECTED_GRADIENTS, MODE_NAMES, UNDECIDED, Verdict,
                                 check_profile, expand_claims, split_claim)
from verify.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from estimators import Estimator

__all__ = ["resolve_estimator", "function_of_r", "parse_claims", "parse_dtypes", "parse_modes", "check_timeout",
           "check_profile", "check_expect", "parse_assignments", "distribution_spec", "user_code", "load_estimator",
           "load_logits_file", "term_inputs", "parse_domain", "has_autograd"]


def resolve_estimator(target) -> "Estimator":
    """An Estimator from a registered name, an expression in r, FILE.py:NAME, module:NAME,
    or an Estimator itself."""
    from estimators import Estimator

    if isinstance(target, Estimator):
        return target
    if isinstance(target, str):
        from verify.api.targets import resolve

        return resolve(target)
    raise UsageError(f"expected an estimator name, an expression in r or an Estimator, got {type(target).__name__}")


def function_of_r(estimator: "Estimator") -> "Estimator":
    """The estimator itself if it is a function f(r) of one sample; a catalog entry that is
    not (the full-vocabulary KL) has only a gradient to check."""
    if estimator.expr is None:
        raise UsageError(f"{estimator.name} is not a function of r; see: verify gradients {estimator.name}")
    return estimator


def parse_claims(claims) -> list[str]:
    """Claim names (a comma-separated string or a sequence), checked and expanded per dtype."""
    if isinstance(claims, str):
        claims = claims.split(",")
    try:
        names = [c.strip() for c in claims if c.strip()]
    except (TypeError, AttributeError):
        raise UsageError("claims must be a comma-separated string or a list of claim names") from None
    if not names:
        raise UsageError("no claims given")
    for name in names:
        split_claim(name)
    return expand_claims(names)


def parse_dtypes(dtypes) -> list[str]:
    """Dtype names (comma-separated string or sequence), checked, in the order of DTYPES."""
    names = [d.strip() for d in (dtypes.split(",") if isinstance(dtypes, str) else dtypes) if d.strip()]
    if not names:
        raise UsageError("--dtypes is empty")
    for name in names:
        if name not in DTYPES:
            raise UsageError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return [d for d in DTYPES if d in names]


def parse_modes(modes, empty: str = "no mode given") -> list[str] | None:
    """Mode names (None: all) from a comma-separated string or a sequence of them (as
    repeated ``--mode`` gives), checked against ``MODE_NAMES`` without loading the layer."""
    if modes is None:
        return None
    values = [modes] if isinstance(modes, str) else list(modes)
    names = [name.strip() for value in values for name in str(value).split(",") if name.strip()]
    if not names:
        raise UsageError(empty)
    for name in names:
        if name not in MODE_NAMES:
            raise UsageError(f"unknown mode {name!r}; known: {', '.join(MODE_NAMES)}")
    return names


MAX_OPTION_LENGTH = 10_000


def parse_assignments(values, flag: str, literal: bool) -> dict:
    """``NAME=VALUE`` strings (``--option``, ``--bind``) as a dict; with ``literal`` a value
    is read as a Python literal (``ast.literal_eval``: numbers, strings, None, tuples; never
    code) and kept as text otherwise."""
    import ast
    import re

    found: dict = {}
    for text in values or ():
        name, sign, value = str(text).partition("=")
        name = name.strip()
        if not sign or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"{flag} {text!r}: expected NAME=VALUE with NAME a parameter name")
        if name in found:
            raise UsageError(f"{flag}: {name!r} given twice")
        if len(value) > MAX_OPTION_LENGTH:
            raise UsageError(f"{flag} {name}: a value of at most {MAX_OPTION_LENGTH} characters")
        if literal:
            try:
                found[name] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                found[name] = value
        else:
            found[name] = value.strip()
    return found


def check_expect(expect) -> None:
    """The gradient gate's target: None, or one of ``EXPECTED_GRADIENTS``."""
    if expect is not None and expect not in EXPECTED_GRADIENTS:
        raise UsageError(f"unknown --expect {expect!r}; known: {', '.join(EXPECTED_GRADIENTS)}")


def parse_domain(domain) -> tuple[float, float] | None:
    """The floating-point claims' domain: None (the default, [-60, 0]), or (LO, HI) from
    "LO,HI" or a pair of numbers, with LO < HI <= 0, HI finite and LO finite or -inf."""
    if domain is None:
        return None
    usage = "--domain: expected LO,HI with LO < HI <= 0, HI finite, LO a number or -inf (e.g. --domain=-inf,0)"
    try:
        parts = domain.split(",") if isinstance(domain, str) else list(domain)
        if len(parts) != 2 or any(isinstance(part, bool) for part in parts):
            raise ValueError
        low, high = (float(part.strip()) if isinstance(part, str) else float(part) for part in parts)
    except (TypeError, ValueError, AttributeError):
        raise UsageError(f"{usage}; got {domain!r}"[:300]) from None
    if math.isnan(low) or math.isnan(high) or not math.isfinite(high) or high > 0 or low == math.inf or not low < high:
        raise UsageError(f"{usage}; got {low:g},{high:g}")
    return low + 0.0, high + 0.0


def has_autograd(estimator) -> bool:
    """Whether the backward-pass claims apply: a torch implementation, or a NumPy one
    with ``numeric_grad`` (otherwise they are undecided, not applicable)."""
    return estimator.numeric is not None and (getattr(estimator, "framework", "numpy") == "torch"
                                              or getattr(estimator, "numeric_grad", None) is not None)


def check_term_arguments(usage, options, binds) -> None:
    """A torch term's usage (loss or reward) and its ``options``/``binds`` (dicts keyed by
    parameter name, or None); UsageError otherwise."""
    if usage not in ("loss", "reward"):
        raise UsageError(f"unknown usage {usage!r}; known: loss, reward")
    for label, mapping in (("options", options), ("binds", binds)):
        if mapping is not None and not (isinstance(mapping, dict) and all(isinstance(k, str) for k in mapping)):
            raise UsageError(f"{label} must be a dict keyed by parameter name")


def check_timeout(timeout):
    """A time limit in (0, 3600] seconds, or None (the default); UsageError otherwise."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise UsageError("--timeout must be in (0, 3600] seconds")


# scipy.stats name -> (spec name, shape parameters kept in order, loc and scale allowed)
_SCIPY_FAMILIES = {"norm": ("norm", 0, True), "laplace": ("laplace", 0, True), "t": ("t", 1, True),
                   "gamma": ("gamma", 1, True), "beta": ("beta", 2, False), "poisson": ("poisson", 1, False)}


def distribution_spec(distribution) -> str:
    """The spec string of ``verify.layers.exact.parse_family`` for a spec string (returned as is)
    or a frozen ``scipy.stats`` distribution of a supported family (``norm``, ``laplace``,
    ``t``, ``gamma``, ``beta`` and ``poisson`` with loc 0 and, for beta, scale 1)."""
    if isinstance(distribution, str):
        return distribution
    family = getattr(distribution, "dist", None)
    name = getattr(family, "name", None)
    if name not in _SCIPY_FAMILIES or not hasattr(distribution, "args"):
        known = ", ".join(_SCIPY_FAMILIES)
        raise UsageError(f"unsupported distribution {name or type(distribution).__name__!r}: give a spec string "
                         f"or a frozen scipy.stats distribution of {known}")
    spec_name, shapes, loc_scale = _SCIPY_FAMILIES[name]
    try:  # scipy's own split of args/kwds into (shapes, loc[, scale])
        shape_values, *rest = family._parse_args(*distribution.args, **distribution.kwds)
        shape_values, rest = [float(v) for v in shape_values], [float(v) for v in rest]
    except (TypeError, ValueError) as error:
        raise UsageError(f"bad {name} distribution: {error}") from None
    for value in shape_values + rest:
        if not math.isfinite(value):
            raise UsageError(f"bad {name} distribution: parameter {value!r} is not finite")
    if len(shape_values) != shapes:
        raise UsageError(f"bad {name} distribution: expected {shapes} shape parameter(s)")
    loc, scale = rest[0], (rest[1] if len(rest) > 1 else 1.0)
    if loc_scale:
        return f"{spec_name}({', '.join(repr(v) for v in shape_values + [loc, scale])})"
    if loc != 0.0 or scale != 1.0:
        raise UsageError(f"{name} with loc/scale other than 0/1 is not a supported family; give loc=0"
                         + (", scale=1" if len(rest) > 1 else ""))
    return f"{spec_name}({', '.join(repr(v) for v in shape_values)})"


def by_dtype(names) -> dict[str, list[str]]:
    """{dtype: claims} from expanded names (``fp_accurate@float16``), the dtypes in the
    order the names first give them: the layers take the dtype as a parameter, and the
    floating layer searches once per dtype."""
    groups: dict[str, list[str]] = {}
    for name in names:
        claim, dtype = split_claim(name)
        groups.setdefault(dtype, []).append(claim)
    return groups


def with_failure(code: int, failure: str | None) -> int:
    """An abnormal end of the user's code never passes: at least exit 3."""
    return EXIT_UNDECIDED if failure is not None and code == EXIT_OK else code


def user_code(target) -> bool:
    """Whether ``target`` brings code of the user's (a file or module to import, or an
    Estimator that is not the registry's own): it then runs in an isolated worker."""
    from estimators import Estimator
    from verify.api.targets import load_registry, names_user_code

    if isinstance(target, str):
        return names_user_code(target)
    if isinstance(target, Estimator):
        return load_registry().get(target.name) is not target
    return False


def abnormal(failure: str) -> Verdict:
    """The verdict of a claim the user's code left open when it ended its worker."""
    return Verdict(UNDECIDED, "the user's code ended abnormally", failure)


def without_code(target):
    """In the isolated worker: the Estimator TARGET names, without its implementation
    (only data crosses back: the expression, the declared claims, the usage)."""
    from dataclasses import replace

    return replace(resolve_estimator(target), numeric=None)


def load_estimator(target, timeout: float | None = None) -> "Estimator":
    """``resolve_estimator(target)``, importing a user's file or module in an isolated worker
    (for the layers that need only its expression and usage, not its code)."""
    if not (isinstance(target, str) and user_code(target)):
        return resolve_estimator(target)
    from verify.api.isolation import DEFAULT_SECONDS, UserCodeFailed, run_isolated

    outcome = run_isolated(without_code, (target,), seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.failure is not None:
        raise UserCodeFailed(f"{target}: {outcome.failure}")
    return outcome.value


def categorical_logits(spec: str, option: str):
    """The logits of a ``categorical(logits=...)`` spec (``--p``, ``--q``, ``--old`` of a
    torch term's gradient check)."""
    from verify.layers.exact import parse_family

    family = parse_family(spec)
    if family.name != "categorical":
        raise UsageError(f"--{option}: the torch gradient check takes categorical(logits=...) specs, got {family.name}")
    return family.logits


def load_logits_file(path_text: str) -> dict:
    """policy, reference and optional old from an .npz (no pickles); UsageError otherwise."""
    import zipfile
    from pathlib import Path

    import numpy as np

    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file: {path_text}")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path_text} is not an .npz archive (np.savez(path, policy=..., reference=...))")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise UsageError(f"{path_text} must be an .npz archive with arrays policy and reference")
            missing = [k for k in ("policy", "reference") if k not in data.files]
            if missing:
                raise UsageError(f"{path_text} has no array {missing[0]!r} (found: {', '.join(data.files) or 'none'})")
            unknown = [k for k in data.files if k not in ("policy", "reference", "old")]
            if unknown:
                raise UsageError(f"{path_text}: unexpected array {unknown[0]!r} (allowed: policy, reference, old)")
            return {k: np.array(data[k]) for k in data.files}
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt or pickled file is bad input
        raise UsageError(f"cannot read {path_text} as .npz without pickles: {type(error).__name__}: {error}") from None


def term_inputs(logits=None, p=None, q=None, old=None) -> dict:
    """The logits a torch term's gradient check takes: from an .npz file (``logits``) or
    from categorical specs (``p`` the reference, ``q`` the policy, ``old``); {} for the
    layer's own pairs."""
    if logits is not None:
        if p is not None or q is not None or old is not None:
            raise UsageError("give either --logits or --p/--q (and --old), not both")
        arrays = load_logits_file(logits)
        return {"policy": arrays["policy"], "reference": arrays["reference"], "old": arrays.get("old")}
    if p is not None or q is not None:
        if p is None or q is None:
            raise UsageError("give both --p and --q")
        return {"policy": categorical_logits(q, "q"), "reference": categorical_logits(p, "p"),
                "old": categorical_logits(old, "old") if old is not None else None}
    if old is not None:
        raise UsageError("--old needs --p and --q")
    return {}
