"""The public Python API: what the CLI, the reports and your own code call.

    import verify
    result = verify.check("k3", ["nonnegative", "unbiased_kl_qp"])
    result.verdicts["nonnegative"].verdict        # 'proved'
    verify.moments("k3", scipy.stats.t(3), scipy.stats.norm()).variance   # inf

Every result is a frozen dataclass with ``to_json()`` (the document ``--json`` prints,
with ``schema_version`` and ``kind``; schemas in ``verify/schemas/``).  Bad input raises
:class:`verify.UsageError` with the one-line message the CLI prints.  Heavy libraries
(sympy, scipy, mpmath, hypothesis, matplotlib) are imported inside the functions that
need them, so ``import verify`` stays cheap.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from verify import UsageError
from verify.claims import DTYPES, FLOATING, SYMBOLIC, UNDECIDED, Verdict, exit_code, expand_claims, split_claim

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from estimators import Estimator

__all__ = ["SCHEMA_VERSION", "json_document", "schema", "validate", "CheckResult", "MomentsResult", "GradientsResult", "FuzzResult",
           "check", "moments", "gradients", "fuzz", "check_implementation", "parse_claims", "distribution_spec",
           "PROFILES"]

# Version of every JSON document (`--json` outputs and results.json).  Bump it when a key
# changes meaning or disappears; new keys may appear without a bump (schemas allow them).
SCHEMA_VERSION = 2
PROFILES = ("dev", "ci", "thorough")


def json_document(kind: str, payload: Any) -> dict:
    """The JSON object every command prints: ``schema_version``, ``kind``, then the payload
    (a dict is merged in; a list goes under ``items``)."""
    head = {"schema_version": SCHEMA_VERSION, "kind": kind}
    if isinstance(payload, Mapping):
        return {**head, **payload}
    return {**head, "items": list(payload)}


SCHEMA_KINDS = ("check", "fuzz", "moments", "gradients", "term_gradients", "failure", "results")


def schema(kind: str) -> dict:
    """The JSON Schema of a document kind (package data ``verify/schemas/<kind>.json``)."""
    import json
    from importlib.resources import files

    if kind not in SCHEMA_KINDS + ("verdict", "number"):
        raise UsageError(f"unknown schema {kind!r}; known: {', '.join(SCHEMA_KINDS)}")
    return json.loads(files("verify").joinpath("schemas", f"{kind}.json").read_text(encoding="utf-8"))


def validate(document: dict, kind: str | None = None) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` follows its schema (``kind``:
    the document's own ``kind`` field, or ``results`` for results.json).  Needs jsonschema."""
    import jsonschema
    from referencing import Registry, Resource

    kind = kind or document.get("kind", "results")
    resources = [(f"https://kl-verify/schemas/{name}.json", Resource.from_contents(schema(name)))
                 for name in SCHEMA_KINDS + ("verdict", "number")]
    validator = jsonschema.Draft202012Validator(schema(kind), registry=Registry().with_resources(resources))
    validator.validate(document)


# ---------------------------------------------------------------------------- inputs


def _estimator(target) -> "Estimator":
    """An Estimator from a registered name, an expression in r, FILE.py:NAME, module:NAME,
    or an Estimator itself."""
    from estimators import Estimator

    if isinstance(target, Estimator):
        return target
    if isinstance(target, str):
        from verify.targets import resolve

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


def _check_timeout(timeout):
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise UsageError("--timeout must be in (0, 3600] seconds")


def _check_profile(profile):
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")


# scipy.stats name -> (spec name, shape parameters kept in order, loc and scale allowed)
_SCIPY_FAMILIES = {"norm": ("norm", 0, True), "laplace": ("laplace", 0, True), "t": ("t", 1, True),
                   "gamma": ("gamma", 1, True), "beta": ("beta", 2, False), "poisson": ("poisson", 1, False)}


def distribution_spec(distribution) -> str:
    """The spec string of ``verify.exact.parse_family`` for a spec string (returned as is)
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


def _by_dtype(claims) -> list[list[str]]:
    """Expanded floating-point claims grouped by dtype (the layer searches once per dtype)."""
    groups: dict[str, list[str]] = {}
    for claim in claims:
        groups.setdefault(claim.partition("@")[2], []).append(claim)
    return list(groups.values())


# ---------------------------------------------------------------------------- check


@dataclass(frozen=True)
class CheckResult:
    """Verdicts of one estimator; ``gated`` are the claims its exit code depends on
    (the declared ones, or those asked for).  ``failure``: how the user's code ended its
    worker early (one line; claims it left open are undecided), else None.  ``output``:
    what the user's code printed (kept out of the JSON; the CLI shows it on stderr)."""

    estimator: str
    expression: str
    verdicts: Mapping[str, Verdict]
    gated: tuple[str, ...]
    failure: str | None = None
    output: str = field(default="", repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        return _with_failure(exit_code(self.verdicts[c].verdict for c in self.gated), self.failure)

    def to_json(self) -> dict:
        payload = {"estimator": self.estimator, "expression": self.expression, "gated": list(self.gated),
                   "claims": {claim: verdict.as_json() for claim, verdict in self.verdicts.items()}}
        if self.failure is not None:
            payload["failure"] = self.failure
        return json_document("check", payload)


def _with_failure(code: int, failure: str | None) -> int:
    """An abnormal end of the user's code never passes: at least exit 3."""
    from verify.claims import EXIT_OK, EXIT_UNDECIDED

    return EXIT_UNDECIDED if failure is not None and code == EXIT_OK else code


def _decide_symbolic(expr, claims, timeout, domain, progress, jobs=None):
    """The symbolic layer's ``decide``, passing ``progress`` and ``domain`` where it takes them."""
    from verify import symbolic

    parameters = inspect.signature(symbolic.decide).parameters
    options = {"domain": domain}
    if timeout is not None:
        options["timeout"] = timeout
    if jobs is not None:
        options["jobs"] = jobs
    if progress is not None and "progress" in parameters:
        options["progress"] = progress
    return symbolic.decide(expr, claims, **options), "progress" in parameters


def _user_code(target) -> bool:
    """Whether ``target`` brings code of the user's (a file or module to import, or an
    Estimator that is not the registry's own): it then runs in an isolated worker."""
    from estimators import Estimator
    from verify.targets import load_registry, names_user_code

    if isinstance(target, str):
        return names_user_code(target)
    if isinstance(target, Estimator):
        return load_registry().get(target.name) is not target
    return False


def _plan(estimator, wanted):
    """(expression, domain, every claim to decide, gated claims) for ``check``."""
    from verify.expression import as_expression_with_domain  # sympy: only once the input is known good

    expr, domain = as_expression_with_domain(estimator.expr)
    if wanted is not None:
        names = gated = list(wanted)
    else:
        gated = expand_claims(estimator.claims)
        names = list(SYMBOLIC) + (expand_claims(FLOATING) if estimator.numeric is not None else [])
        names += [c for c in gated if c not in names]
    floating_claims = [c for c in names if c not in SYMBOLIC]
    if floating_claims and estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no numeric implementation for {floating_claims[0]}")
    return expr, domain, names, gated


def _floating_verdicts(estimator, claims, profile, on_group):
    """The floating-point verdicts, one dtype at a time; ``on_group(verdicts)`` after each."""
    from verify import floating

    for group in _by_dtype(claims):
        on_group(floating.check_claims(estimator, group, profile=profile))


def _check_floating_in_worker(target, wanted, profile):
    """In the isolated worker: resolve (import the user's code), send the plan, then the
    floating-point verdicts dtype by dtype (they survive a later crash)."""
    from verify.isolation import send

    estimator = function_of_r(_estimator(target))
    expr, domain, names, gated = _plan(estimator, wanted)
    send(("plan", estimator.name, expr, domain, names, gated))
    _floating_verdicts(estimator, [c for c in names if c not in SYMBOLIC], profile,
                       lambda verdicts: send(("verdicts", verdicts)))


def _abnormal(failure: str) -> Verdict:
    """The verdict of a claim the user's code left open when it ended its worker."""
    return Verdict(UNDECIDED, "the user's code ended abnormally", failure)


def check(target, claims: Sequence[str] | str | None = None, *, timeout: float | None = None,
          profile: str = "ci", progress: Callable[[str, Verdict], None] | None = None,
          jobs: int | None = None) -> CheckResult:
    """Decide claims for one estimator: symbolic ones in r, floating-point ones on its
    numeric implementation.  ``claims=None``: every symbolic claim, every floating-point
    claim if it has an implementation, gating on its declared claims.  ``timeout``: the
    symbolic layer's CPU seconds per claim (None: its default), and the wall-clock limit
    on the user's own code in all (None: ``verify.isolation.DEFAULT_SECONDS``).  The
    user's code (a file or module target, an Estimator not in the registry) is imported
    and run in an isolated worker (``verify.isolation``).  ``progress(claim, verdict)`` is
    called as each verdict arrives; ``jobs``: symbolic claims decided at once."""
    _check_timeout(timeout)
    _check_profile(profile)
    wanted = parse_claims(claims) if claims is not None else None

    def report(verdicts):
        if progress is not None:
            for claim, verdict in verdicts.items():
                progress(claim, verdict)

    verdicts: dict[str, Verdict] = {}
    failure, output = None, ""
    isolated = _user_code(target)
    if isolated:
        from verify.isolation import DEFAULT_SECONDS, run_isolated

        plan: list = []

        def on_message(message):
            if message[0] == "plan":
                plan[:] = message[1:]
            else:
                verdicts.update(message[1])
                report(message[1])

        outcome = run_isolated(_check_floating_in_worker, (target, wanted, profile), on_message=on_message,
                               seconds=timeout if timeout is not None else DEFAULT_SECONDS)
        failure, output = outcome.failure, outcome.output
        if not plan:  # it ended before its estimator was known (at import)
            name = target if isinstance(target, str) else getattr(target, "name", "?")
            return CheckResult(name, "", {c: _abnormal(failure) for c in wanted or ()}, tuple(wanted or ()),
                               failure, output)
        name, expr, domain, names, gated = plan
        for claim in names:
            if claim not in SYMBOLIC and claim not in verdicts:
                verdicts[claim] = _abnormal(failure)
    else:
        estimator = function_of_r(_estimator(target))
        expr, domain, names, gated = _plan(estimator, wanted)
        name = estimator.name
    symbolic_claims = [c for c in names if c in SYMBOLIC]
    if symbolic_claims:
        found, reported = _decide_symbolic(expr, symbolic_claims, timeout, domain, progress, jobs)
        verdicts.update(found)
        if not reported:
            report({claim: found[claim] for claim in symbolic_claims})
    if not isolated:
        floating_claims = [c for c in names if c not in SYMBOLIC]

        def keep(found):
            verdicts.update(found)
            report(found)

        _floating_verdicts(estimator, floating_claims, profile, keep)
    return CheckResult(name, str(expr), {c: verdicts[c] for c in names}, tuple(gated), failure, output)


# -------------------------------------------------------------------------- moments


@dataclass(frozen=True)
class MomentsResult:
    """Exact moments of f(r) under q with absolute error bounds, and bias against both KLs.
    ``raw`` is the exact layer's record (it may carry more fields than these)."""

    estimator: str
    expression: str
    p: str
    q: str
    mean: float
    mean_abs_error: float
    variance: float
    variance_abs_error: float
    kl_qp: float
    kl_pq: float
    bias_qp: float
    bias_pq: float
    relative_bias_qp: float
    relative_bias_pq: float
    raw: Any = field(repr=False, compare=False, default=None)

    def to_json(self) -> dict:
        return json_document("moments", self.raw.as_json(self.estimator))


def moments(estimator, p, q) -> MomentsResult:
    """Exact E_q[f], Var_q[f], KL(q||p), KL(p||q) and the biases for x ~ q.  ``p`` and ``q``
    are spec strings (``"norm(0, 1)"``) or frozen ``scipy.stats`` distributions.  Raises
    ``verify.exact.ExactError`` when a value cannot be computed to a trustworthy bound."""
    from verify.exact import moments as exact_moments, parse_family
    from verify.expression import as_expression

    p_spec, q_spec = distribution_spec(p), distribution_spec(q)
    chosen = load_estimator(estimator)
    expr = as_expression(chosen.expr)
    result = exact_moments(expr, parse_family(p_spec), parse_family(q_spec))
    names = ("p", "q", "mean", "mean_abs_error", "variance", "variance_abs_error", "kl_qp", "kl_pq", "bias_qp",
             "bias_pq", "relative_bias_qp", "relative_bias_pq")
    return MomentsResult(chosen.name, str(expr), **{n: getattr(result, n) for n in names}, raw=result)


# ------------------------------------------------------------------------ gradients


@dataclass(frozen=True)
class GradientsResult:
    """Exact expected gradients per (mode, family, regime); ``rows`` are the gradient
    layer's results (``as_row()`` gives the JSON row).  ``disagreements`` lists where they
    contradict the symbolic gradient verdicts (a harness bug; empty when not checked)."""

    estimator: str
    expression: str
    rows: tuple
    disagreements: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return json_document("gradients", {"estimator": self.estimator,
                                           "results": [row.as_row() for row in self.rows]})


def gradients(target, modes: Sequence[str] | None = None, *, cross_check: bool = False,
              timeout: float | None = None) -> GradientsResult:
    """The expected gradient of an estimator in each mode (``loss``, ``reward``,
    ``loss_offpolicy``, ``loss_is_weighted``, ``straight_through``; None: all), classified as
    ``gradient_of``.  A catalog entry is shown as its library uses it (its usage's modes
    among those asked; ``as_used`` on each row), exactly as ``verify gradients NAME``
    prints it.  ``cross_check``: compare with the symbolic gradient verdicts (``timeout``:
    CPU seconds per claim there, and the wall-clock limit on importing a user's file).
    Raises ``verify.gradients.GradientUndecided`` when no trustworthy bound is reached."""
    from verify import gradients as layer
    from verify.claims import GRADIENT
    from verify.expression import as_expression_with_domain

    _check_timeout(timeout)
    if isinstance(modes, str):
        modes = [m.strip() for m in modes.split(",") if m.strip()]
    names = list(modes) if modes is not None else None
    layer.parse_modes(names)  # unknown or empty modes: a UsageError before any work
    estimator = load_estimator(target, timeout)
    rows = tuple(layer.gradient_details(estimator, names))  # names: a catalog entry as its library uses it
    if estimator.expr is None:  # the full-vocabulary KL: not a function of r, no symbolic claims
        return GradientsResult(estimator.name, "", rows, ())
    expr, domain = as_expression_with_domain(estimator.expr)
    problems: list[str] = []
    if cross_check:
        verdicts, _ = _decide_symbolic(expr, list(GRADIENT), timeout, domain, None)
        problems = layer.symbolic_disagreements({c: v.verdict for c, v in verdicts.items()}, rows)
    return GradientsResult(estimator.name, str(expr), rows, tuple(problems))


# ----------------------------------------------------------------------------- fuzz


@dataclass(frozen=True)
class FuzzResult:
    """Floating-point verdicts per estimator and expanded claim (``fp_finite@float16``);
    ``declared`` holds the claims each estimator declares (the exit code gates on them)."""

    profile: str
    dtypes: tuple[str, ...]
    verdicts: Mapping[str, Mapping[str, Verdict]]
    declared: Mapping[str, tuple[str, ...]]
    failures: Mapping[str, str] = field(default_factory=dict)  # how the user's code ended early
    output: str = field(default="", repr=False, compare=False)  # what the user's code printed

    @property
    def exit_code(self) -> int:
        code = exit_code(self.verdicts[name][c].verdict for name in self.verdicts
                         for c in self.declared[name] if c in self.verdicts[name])
        return _with_failure(code, "; ".join(self.failures.values()) or None)

    def to_json(self) -> dict:
        payload = {"profile": self.profile, "dtypes": list(self.dtypes), "estimators": {
            name: {claim: dict(verdict.as_json(), declared=claim in self.declared[name])
                   for claim, verdict in verdicts.items()} for name, verdicts in self.verdicts.items()}}
        if self.failures:
            payload["failures"] = dict(self.failures)
        return json_document("fuzz", payload)


def parse_dtypes(dtypes) -> list[str]:
    """Dtype names (comma-separated string or sequence), checked, in the order of DTYPES."""
    names = [d.strip() for d in (dtypes.split(",") if isinstance(dtypes, str) else dtypes) if d.strip()]
    if not names:
        raise UsageError("--dtypes is empty")
    for name in names:
        if name not in DTYPES:
            raise UsageError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return [d for d in DTYPES if d in names]


def _fuzz_one(estimator, claims, profile, on_group):
    """One estimator's floating-point verdicts, dtype by dtype."""
    if estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no numeric implementation")
    _floating_verdicts(estimator, claims, profile, on_group)
    return tuple(expand_claims([c for c in estimator.claims if c.split("@")[0] in FLOATING]))


def _fuzz_in_worker(target, claims, profile):
    from verify.isolation import send

    estimator = _estimator(target)
    send(("name", estimator.name))
    return _fuzz_one(estimator, claims, profile, lambda verdicts: send(("verdicts", verdicts)))


def fuzz(target=None, dtypes: Sequence[str] | str = DTYPES, *, profile: str = "ci",
         progress: Callable[[str, str], None] | None = None, timeout: float | None = None) -> FuzzResult:
    """Every floating-point claim of one estimator's numeric implementation (None: every
    registered estimator that has one), in the given dtypes.  ``progress(name, dtype)``
    is called after each dtype.  The user's code runs in an isolated worker under a
    wall-clock limit of ``timeout`` seconds (None: ``verify.isolation.DEFAULT_SECONDS``)."""
    from verify.targets import load_registry

    chosen_dtypes = parse_dtypes(dtypes)
    _check_profile(profile)
    _check_timeout(timeout)
    claims = [f"{c}@{d}" for c in FLOATING for d in chosen_dtypes]
    verdicts, declared, failures, outputs = {}, {}, {}, []
    if target is not None and _user_code(target):
        from verify.isolation import DEFAULT_SECONDS, run_isolated

        found: dict[str, Verdict] = {}
        name = [target if isinstance(target, str) else getattr(target, "name", "?")]

        def on_message(message):
            if message[0] == "name":
                name[0] = message[1]
                return
            found.update(message[1])
            if progress is not None:
                progress(name[0], next(iter(message[1])).partition("@")[2])

        outcome = run_isolated(_fuzz_in_worker, (target, claims, profile), on_message=on_message,
                               seconds=timeout if timeout is not None else DEFAULT_SECONDS)
        verdicts[name[0]] = {claim: found.get(claim) or _abnormal(outcome.failure) for claim in claims}
        declared[name[0]] = outcome.value if outcome.failure is None else ()
        if outcome.failure is not None:
            failures[name[0]] = outcome.failure
        outputs.append(outcome.output)
        return FuzzResult(profile, tuple(chosen_dtypes), verdicts, declared, failures, "".join(outputs))
    if target is None:
        estimators = [e for _, e in sorted(load_registry().items()) if e.numeric is not None]
    else:
        estimators = [_estimator(target)]
    for estimator in estimators:
        found = {}

        def keep(group_verdicts, estimator=estimator, found=found):
            found.update(group_verdicts)
            if progress is not None:
                progress(estimator.name, next(iter(group_verdicts)).partition("@")[2])

        declared[estimator.name] = _fuzz_one(estimator, claims, profile, keep)
        verdicts[estimator.name] = {claim: found[claim] for claim in claims}
    return FuzzResult(profile, tuple(chosen_dtypes), verdicts, declared)


def check_implementation(fn: Callable, expr, claims: Sequence[str] = FLOATING, dtypes: Sequence[str] = DTYPES, *,
                         profile: str = "ci", timeout: float | None = None, **options) -> dict[str, Verdict]:
    """Floating-point claims of any callable ``fn(logp, logq)`` (NumPy arrays of one dtype
    in, an array of that dtype out) against the estimator ``expr``: what the pytest plugin
    asserts.  ``fn`` runs in an isolated worker under a wall-clock limit of ``timeout``
    seconds (None: ``verify.isolation.DEFAULT_SECONDS``); if it ends that worker, every
    claim is undecided with the reason.  ``options`` go to the floating layer (``fp_ulps``, ...)."""
    from functools import partial

    from verify.floating import check_callable
    from verify.isolation import DEFAULT_SECONDS, run_isolated

    _check_profile(profile)
    _check_timeout(timeout)
    chosen = parse_dtypes(dtypes)
    names = []
    for claim in (claims.split(",") if isinstance(claims, str) else claims):
        base, dtype = split_claim(claim.strip())
        names += [f"{base}@{d}" for d in ([dtype] if dtype else chosen) if f"{base}@{d}" not in names]
    outcome = run_isolated(partial(check_callable, fn, expr, claims=names, profile=profile, **options),
                           seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.failure is not None:
        return {name: _abnormal(outcome.failure) for name in names}
    return outcome.value


def _without_code(target):
    """In the isolated worker: the Estimator TARGET names, without its implementation
    (only data crosses back: the expression, the declared claims, the usage)."""
    from dataclasses import replace

    return replace(_estimator(target), numeric=None)


def load_estimator(target, timeout: float | None = None) -> "Estimator":
    """``_estimator(target)``, importing a user's file or module in an isolated worker
    (for the layers that need only its expression and usage, not its code)."""
    if not (isinstance(target, str) and _user_code(target)):
        return _estimator(target)
    from verify.isolation import DEFAULT_SECONDS, UserCodeFailed, run_isolated

    outcome = run_isolated(_without_code, (target,), seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.failure is not None:
        raise UserCodeFailed(f"{target}: {outcome.failure}")
    return outcome.value


def _term_in_worker(target, usage, given):
    from verify import autograd
    from verify.targets import resolve_term

    return autograd.gradient_of_term(resolve_term(target), usage=usage, name=target.rpartition(":")[2], **given)


def term_gradients(target: str, *, usage: str = "loss", policy=None, reference=None, old=None,
                   timeout: float | None = None):
    """The expected gradient of the user's own per-token torch term ``FILE.py:FUNC``
    (``FUNC(logp, ref_logp, old_logp)``) through its own autograd
    (``verify.autograd.gradient_of_term``), loaded and run in an isolated worker under a
    wall-clock limit of ``timeout`` seconds.  Raises ``UserCodeFailed`` with the one-line
    reason if the term ends its worker, ``GradientUndecided`` if no bound is reached."""
    from verify.frameworks import require_torch
    from verify.isolation import DEFAULT_SECONDS, UserCodeFailed, run_isolated

    require_torch()
    _check_timeout(timeout)
    if usage not in ("loss", "reward"):
        raise UsageError(f"unknown usage {usage!r}; known: loss, reward")
    given = {key: value for key, value in (("policy", policy), ("reference", reference), ("old", old))
             if value is not None}
    outcome = run_isolated(_term_in_worker, (target, usage, given),
                           seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.failure is not None:
        if outcome.failure.startswith("the user's code raised GradientUndecided: "):
            from verify.gradients import GradientUndecided

            raise GradientUndecided(outcome.failure.partition("GradientUndecided: ")[2])
        raise UserCodeFailed(f"{target}: {outcome.failure}")
    from dataclasses import replace

    return replace(outcome.value, output=outcome.output)
