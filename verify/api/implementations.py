"""``fuzz`` and ``check_implementation``: the floating-point claims of implementations
(the registry's, a user's file, any callable), the user's code in an isolated worker."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from verify.api.documents import json_document
from verify.api.inputs import (abnormal, by_dtype, check_profile, check_timeout, has_autograd, parse_domain,
                               parse_dtypes, resolve_estimator, user_code, with_failure)
from verify.api.verdicts import floating_verdicts
from verify.core.claims import BACKWARD, DTYPES, FLOATING, Verdict, exit_code, expand_claims, split_claim
from verify.errors import UsageError


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
        return with_failure(code, "; ".join(self.failures.values()) or None)

    def to_json(self) -> dict:
        payload = {"profile": self.profile, "dtypes": list(self.dtypes), "estimators": {
            name: {claim: dict(verdict.as_json(), declared=claim in self.declared[name])
                   for claim, verdict in verdicts.items()} for name, verdicts in self.verdicts.items()}}
        if self.failures:
            payload["failures"] = dict(self.failures)
        return json_document("fuzz", payload)


def _fuzz_one(estimator, claims, profile, on_group, domain=None):
    """One estimator's floating-point verdicts, dtype by dtype (the backward-pass claims
    too when it has autograd)."""
    if estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no numeric implementation")
    if has_autograd(estimator):
        dtypes = dict.fromkeys(split_claim(claim)[1] for claim in claims)
        claims = list(claims) + [f"{c}@{d}" for c in BACKWARD for d in dtypes]
    floating_verdicts(estimator, claims, profile, on_group, domain=domain)
    return tuple(expand_claims([c for c in estimator.claims if c.split("@")[0] in FLOATING + BACKWARD]))


def _in_order(claims, found: dict) -> list:
    """``claims``, then the claims ``found`` adds (the backward ones of an implementation with autograd)."""
    return list(claims) + [claim for claim in found if claim not in claims]


def _fuzz_in_worker(target, claims, profile, domain=None):
    from verify.api.isolation import send

    estimator = resolve_estimator(target)
    send(("name", estimator.name))
    return _fuzz_one(estimator, claims, profile, lambda verdicts: send(("verdicts", verdicts)), domain)


def fuzz(target=None, dtypes: Sequence[str] | str = DTYPES, *, profile: str = "ci",
         progress: Callable[[str, str], None] | None = None, timeout: float | None = None,
         framework: str = "numpy", options: dict | None = None, binds: dict | None = None, domain=None):
    """Every floating-point claim of one estimator's numeric implementation (None: every
    registered estimator that has one), in the given dtypes.  ``progress(name, dtype)``
    is called after each dtype.  The user's code runs in an isolated worker under a
    wall-clock limit of ``timeout`` seconds (None: ``verify.api.isolation.DEFAULT_SECONDS``).
    ``framework="torch"``: TARGET is a library's own torch function FILE.py:FUNC, swept with
    no formula (``verify.api.functions.fuzz_function``, with ``options`` and ``binds``; it
    returns a ``FunctionFuzzResult``); an Estimator target is fuzzed as above.  An
    implementation with autograd also gets the backward-pass claims.  ``domain``: (LO, HI)
    or "LO,HI" (None: [-60, 0]; docs/claims.md)."""
    from verify.api.targets import load_registry
    from verify.core.frameworks import check_framework

    if check_framework(framework) == "torch":
        from verify.api.functions import NamesAnEstimator, fuzz_function

        try:
            return fuzz_function(target, dtypes, options=options, binds=binds, profile=profile, timeout=timeout,
                                 progress=progress, domain=domain)
        except NamesAnEstimator:
            if options or binds:
                raise UsageError(f"{target} is an Estimator: --option and --bind are for a library's own "
                                 "function") from None
    elif options or binds:
        raise UsageError("--option and --bind need --framework torch (a library's own function FILE.py:FUNC)")
    chosen_dtypes = parse_dtypes(dtypes)
    check_profile(profile)
    check_timeout(timeout)
    domain = parse_domain(domain)
    claims = [f"{c}@{d}" for c in FLOATING for d in chosen_dtypes]
    verdicts, declared, failures, outputs = {}, {}, {}, []
    if target is not None and user_code(target):
        from verify.api.isolation import DEFAULT_SECONDS, run_isolated

        found: dict[str, Verdict] = {}
        name = [target if isinstance(target, str) else getattr(target, "name", "?")]

        def on_message(message):
            if message[0] == "name":
                name[0] = message[1]
                return
            found.update(message[1])
            if progress is not None:
                progress(name[0], next(iter(message[1])).partition("@")[2])

        outcome = run_isolated(_fuzz_in_worker, (target, claims, profile, domain), on_message=on_message,
                               seconds=timeout if timeout is not None else DEFAULT_SECONDS)
        verdicts[name[0]] = {claim: found.get(claim) or abnormal(outcome.failure) for claim in _in_order(claims, found)}
        declared[name[0]] = outcome.value if outcome.failure is None else ()
        if outcome.failure is not None:
            failures[name[0]] = outcome.failure
        outputs.append(outcome.output)
        return FuzzResult(profile, tuple(chosen_dtypes), verdicts, declared, failures, "".join(outputs))
    if target is None:
        estimators = [e for _, e in sorted(load_registry().items()) if e.numeric is not None]
    else:
        estimators = [resolve_estimator(target)]
    for estimator in estimators:
        found = {}

        def keep(group_verdicts, estimator=estimator, found=found):
            found.update(group_verdicts)
            if progress is not None:
                progress(estimator.name, next(iter(group_verdicts)).partition("@")[2])

        declared[estimator.name] = _fuzz_one(estimator, claims, profile, keep, domain)
        verdicts[estimator.name] = {claim: found[claim] for claim in _in_order(claims, found)}
    return FuzzResult(profile, tuple(chosen_dtypes), verdicts, declared)


def _check_callable_by_dtype(fn, expr, names, profile, options):
    """In the isolated worker: each dtype's claims through the floating layer, keyed
    ``claim@dtype`` in the order of ``names``."""
    from verify.layers.floating import check_callable

    found = {}
    for dtype, claims in by_dtype(names).items():  # the layer refuses a claim that is not floating-point
        verdicts = check_callable(fn, expr, dtype, claims=claims, profile=profile, **options)
        found.update({f"{claim}@{dtype}": verdict for claim, verdict in verdicts.items()})
    return {name: found[name] for name in names}


def check_implementation(fn: Callable, expr, claims: Sequence[str] | None = None, dtypes: Sequence[str] = DTYPES, *,
                         profile: str = "ci", timeout: float | None = None, **options) -> dict[str, Verdict]:
    """Floating-point claims of any callable ``fn(logp, logq)`` (NumPy arrays of one dtype
    in, an array of that dtype out) against the estimator ``expr``: what the pytest plugin
    asserts.  ``fn`` runs in an isolated worker under a wall-clock limit of ``timeout``
    seconds (None: ``verify.api.isolation.DEFAULT_SECONDS``); if it ends that worker, every
    claim is undecided with the reason.  ``options`` go to the floating layer (``fp_ulps``,
    ``framework``, ``numeric_grad``, ``domain``: (LO, HI) or "LO,HI").  ``claims=None``: the
    value claims, and the backward-pass claims for a torch ``fn`` or with ``numeric_grad``."""
    from verify.api.isolation import DEFAULT_SECONDS, run_isolated

    check_profile(profile)
    check_timeout(timeout)
    if "domain" in options:
        options["domain"] = parse_domain(options["domain"])
    if claims is None:
        autograd = options.get("framework") == "torch" or options.get("numeric_grad") is not None
        claims = FLOATING + (BACKWARD if autograd else ())
    chosen = parse_dtypes(dtypes)
    names = []
    for claim in (claims.split(",") if isinstance(claims, str) else claims):
        base, dtype = split_claim(claim.strip())
        names += [f"{base}@{d}" for d in ([dtype] if dtype else chosen) if f"{base}@{d}" not in names]
    outcome = run_isolated(_check_callable_by_dtype, (fn, expr, names, profile, options),
                           seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.failure is not None:
        return {name: abnormal(outcome.failure) for name in names}
    return outcome.value
