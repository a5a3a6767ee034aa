"""``fuzz_function``: the floating-point claims of a library's own torch KL function,
called as written (its own argument order and names), with no formula: what
``verify fuzz FILE.py:FUNC --framework torch`` prints.

The function is loaded by the one loader (``targets.resolve_term``), its parameters
bound by name (``verify.layers.gradients.binding.bind_term``: ``--option``, ``--bind``;
a mask is all ones, the old log-probs are the policy's, detached: on-policy), and swept
by the floating layer (``verify.layers.floating.bare_function``) in an isolated worker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from verify.api.documents import json_document
from verify.api.inputs import abnormal, check_profile, check_timeout, parse_domain, parse_dtypes, with_failure
from verify.core.claims import DTYPES, EXIT_REFUTED, Verdict, exit_code
from verify.errors import UsageError

# the claims of a bare function (verify.layers.floating.bare_function.BARE_CLAIMS), restated
# here so that bad input fails before torch loads (a test keeps them equal)
FUNCTION_CLAIMS = ("fp_nonnegative", "fp_finite", "fp_agrees_float64")


class NamesAnEstimator(UsageError):
    """The target is an Estimator, not a bare function: ``fuzz`` runs it as one."""


@dataclass(frozen=True)
class FunctionFuzzResult:
    """Verdicts per expanded claim (``fp_agrees_float64@float16``) of one function; every
    claim is gated.  ``returns``: the dtype the function returned, per input dtype;
    ``float64_returns``: what its float64 evaluation returned (the reference of
    ``fp_agrees_float64``: float32 when the function casts with ``.float()``);
    ``shape_dependence``: pairs whose value differs between their batch and a (1, 1)
    call (the first few per dtype; ``shape_checked`` counts them: any is a finding, exit 1)."""

    function: str
    profile: str
    dtypes: tuple[str, ...]
    verdicts: Mapping[str, Verdict]
    returns: Mapping[str, str] = field(default_factory=dict)
    shape_dependence: tuple = ()
    float64_returns: Mapping[str, str] = field(default_factory=dict)  # what its float64 evaluation returned
    # per dtype: {"pairs": re-evaluated alone, "differ": of which the value depends on the batch shape}
    shape_checked: Mapping[str, dict] = field(default_factory=dict)
    options: Mapping = field(default_factory=dict)
    binds: Mapping = field(default_factory=dict)
    failure: str | None = None  # how the user's code ended its worker early
    output: str = field(default="", repr=False, compare=False)  # what the user's code printed

    @property
    def exit_code(self) -> int:
        code = exit_code(v.verdict for v in self.verdicts.values())
        if self.shape_dependence or any(c["differ"] for c in self.shape_checked.values()):
            code = EXIT_REFUTED
        return with_failure(code, self.failure)

    def to_json(self) -> dict:
        payload = {"function": self.function, "framework": "torch", "profile": self.profile,
                   "dtypes": list(self.dtypes), "options": {k: _plain(v) for k, v in self.options.items()},
                   "binds": dict(self.binds), "claims": {c: v.as_json() for c, v in self.verdicts.items()},
                   "returns": dict(self.returns), "float64_returns": dict(self.float64_returns),
                   "shape_dependence": [dict(f) for f in self.shape_dependence],
                   "shape_checked": {d: dict(c) for d, c in self.shape_checked.items()}}
        if self.failure is not None:
            payload["failure"] = self.failure
        return json_document("fuzz_function", payload)


def _plain(value):
    """An --option's value as JSON holds it (else its repr)."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return repr(value)


def _function_in_worker(target, dtypes, options, binds, profile, domain):
    """In the isolated worker: load, bind and sweep the function, dtype by dtype (each
    dtype's verdicts sent as they come: they survive a later crash)."""
    from estimators import Estimator
    from verify.api.isolation import send
    from verify.api.targets import term_attribute
    from verify.layers.floating import BARE_CLAIMS, sweep_function
    from verify.layers.gradients.binding import bind_term

    assert tuple(BARE_CLAIMS) == FUNCTION_CLAIMS
    func = term_attribute(target)
    if isinstance(func, Estimator):  # ``fuzz`` runs it as an Estimator, with its formula
        return "estimator"
    bound = bind_term(func, options, binds)

    def term(logp, ref_logp):  # on-policy: the old log-probs are the policy's, detached
        return bound(logp, ref_logp, logp.detach())

    found = []
    for dtype in dtypes:
        result = sweep_function(term, dtype, profile=profile, domain=domain)
        send(result)
        found.append(result)
    return found


def fuzz_function(target: str, dtypes: Sequence[str] | str = DTYPES, *, options: dict | None = None,
                  binds: dict | None = None, profile: str = "ci", timeout: float | None = None,
                  progress: Callable[[str, str], None] | None = None, domain=None) -> FunctionFuzzResult:
    """``fp_nonnegative``, ``fp_finite`` and ``fp_agrees_float64`` of the torch function
    ``FILE.py:FUNC`` (or ``module:FUNC``) in each dtype, its parameters bound by name as
    ``verify gradients --framework torch`` binds them (``options``: parameter -> value;
    ``binds``: parameter -> role, ``logp``, ``ref_logp``, ``old_logp`` or ``mask``).
    16-bit dtypes: every pair of the domain (``proved``/``refuted``); float32/float64: a
    grid and seeded random pairs (``tested``/``refuted``).  The function runs in an
    isolated worker under a wall-clock limit of ``timeout`` seconds (None:
    ``verify.api.isolation.DEFAULT_SECONDS``).  ``progress(function, dtype)`` after each
    dtype.  ``domain``: (LO, HI) or "LO,HI", finite (None: [-60, 0]; the suite narrows the
    16-bit part).  Raises ``NamesAnEstimator`` (a UsageError) when the target is an Estimator."""
    from verify.api.isolation import DEFAULT_SECONDS, run_isolated
    from verify.api.targets import names_user_code
    from verify.core.frameworks import require_torch

    chosen = parse_dtypes(dtypes)
    check_profile(profile)
    check_timeout(timeout)
    domain = parse_domain(domain)
    if domain is not None and not math.isfinite(domain[0]):
        raise UsageError("--domain: a library's own function is swept over a finite domain (LO = -inf, masked "
                         "tokens, is not supported with --framework torch)")
    for label, mapping in (("options", options), ("binds", binds)):
        if mapping is not None and not (isinstance(mapping, dict) and all(isinstance(k, str) for k in mapping)):
            raise UsageError(f"{label} must be a dict keyed by parameter name")
    if not names_user_code(target):
        raise UsageError(f"bad target {target!r}: with --framework torch, expected FILE.py:FUNC or module:FUNC")
    require_torch()
    name = target.rpartition(":")[2]
    found = {}

    def on_message(result):
        found[result.dtype] = result
        if progress is not None:
            progress(name, result.dtype)

    outcome = run_isolated(_function_in_worker, (target, chosen, dict(options or {}), dict(binds or {}), profile,
                                                 domain),
                           on_message=on_message, seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.value == "estimator":
        raise NamesAnEstimator(f"{target} is an Estimator, not a function: fuzz it without --framework torch")
    verdicts, returns, float64_returns, shape, checked = {}, {}, {}, [], {}
    for dtype in chosen:
        result = found.get(dtype)
        for claim in FUNCTION_CLAIMS:
            verdicts[f"{claim}@{dtype}"] = (result.verdicts[claim] if result is not None
                                            else abnormal(outcome.failure or "no result"))
        if result is not None:
            if result.returns is not None:
                returns[dtype], float64_returns[dtype] = result.returns, result.float64_returns
            shape += result.shape_dependence
            checked[dtype] = {"pairs": result.shape_checked, "differ": result.shape_differs}
    return FunctionFuzzResult(target, profile, tuple(chosen), verdicts, returns, tuple(shape), float64_returns,
                              checked, dict(options or {}), dict(binds or {}), outcome.failure, outcome.output)
