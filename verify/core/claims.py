"""Claim names, verdicts, modes and exit codes: the vocabulary of the harness.

This module is the one source of truth for what every name means: ``docs/claims.md``
is rendered from it (``kl-verify claims > docs/claims.md``; a test keeps the committed file
identical), and ``kl-verify claims NAME`` prints one entry.  It imports nothing heavy.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Any

from verify.core.dtypes import DTYPES
from verify.errors import UsageError

POINTWISE = (
    "zero_at_one",
    "nonnegative",
    "unique_minimum_at_one",
    "convex",
    "subexponential_growth",
    "linear_growth_in_log_ratio",
)
EXPECTATION = ("unbiased_kl_qp", "unbiased_kl_pq", "locally_unbiased")
GRADIENT = ("loss_grad_zero", "loss_grad_kl_qp", "loss_grad_kl_pq", "reward_grad_kl_qp")
SYMBOLIC = POINTWISE + EXPECTATION + GRADIENT
FLOATING = ("fp_nonnegative", "fp_finite", "fp_accurate", "fp_matches_expression")
# claims on the backward pass: the gradient the implementation's own autograd gives with
# respect to the policy log-prob (logq), per dtype like FLOATING
BACKWARD = ("fp_grad_finite", "fp_grad_accurate")
# the method of a backward claim's verdict for an implementation with no autograd (NumPy
# without ``numeric_grad``): undecided, so it is never a pass, and gated only when asked for
NOT_APPLICABLE = "not applicable: no autograd"
# the claim of a library's own torch function with no formula (verify fuzz FILE.py:FUNC
# --framework torch; verify.layers.floating.bare_function), with fp_nonnegative and fp_finite
FUNCTION = ("fp_agrees_float64",)
PROFILES = ("dev", "ci", "thorough")  # how hard the floating-point search tries
LAYERS = ("symbolic", "floating", "moments", "gradients")  # the layers of `verify all`
# the gradient layer's modes (verify.layers.gradients.MODES, in this order) and those a
# library's usage can take
MODE_NAMES = ("loss", "reward", "loss_offpolicy", "loss_is_weighted", "straight_through")
LIBRARY_MODE_NAMES = ("loss", "loss_offpolicy", "reward")
# what the gradient gate (`verify gradients --expect`) can ask every row to give
EXPECTED_GRADIENTS = ("kl_qp", "kl_pq", "zero")


def check_profile(profile: str) -> str:
    """The profile, or UsageError naming the known ones."""
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return profile

PROVED, TESTED, REFUTED, UNDECIDED = "proved", "tested", "refuted", "undecided"
VERDICTS = (PROVED, TESTED, REFUTED, UNDECIDED)

EXIT_OK, EXIT_REFUTED, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict; ``method`` says how it was reached."""

    verdict: str
    method: str
    detail: str = ""
    counterexample: Any = None
    # floating-point claims: the worst error found, {"ulps", "ulps_at", "abs", "abs_at"}
    worst: Any = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def as_json(self) -> dict:
        data = asdict(self)
        if data["worst"] is None:  # only floating-point verdicts carry it
            del data["worst"]
        return data


def split_claim(claim: str) -> tuple[str, str | None]:
    """``fp_finite@float16`` -> (``fp_finite``, ``float16``); checks both names."""
    base, sep, dtype = claim.partition("@")
    if base in SYMBOLIC:
        if sep:
            raise UsageError(f"claim {base!r} takes no dtype (got {claim!r})")
        return base, None
    if base in FLOATING or base in BACKWARD:
        if sep and dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r} in claim {claim!r}; known: {', '.join(DTYPES)}")
        return base, (dtype if sep else None)
    raise UsageError(f"unknown claim {claim!r}; known: {', '.join(SYMBOLIC + FLOATING + BACKWARD)}")


def expand_claims(claims) -> list[str]:
    """Claim names with every floating-point claim split per dtype, in a stable order."""
    expanded: list[str] = []
    for claim in claims:
        base, dtype = split_claim(claim)
        if (base in FLOATING or base in BACKWARD) and dtype is None:
            names = [f"{base}@{d}" for d in DTYPES]
        else:
            names = [claim]
        expanded += [n for n in names if n not in expanded]
    return expanded


def exit_code(verdicts) -> int:
    """The exit code (see ``EXIT_CODES``) for a collection of verdict strings."""
    verdicts = list(verdicts)
    if REFUTED in verdicts:
        return EXIT_REFUTED
    if UNDECIDED in verdicts:
        return EXIT_UNDECIDED
    return EXIT_OK


# ------------------------------------------------------------------ the reference
#
# Everything below is data for docs/claims.md and `kl-verify claims NAME`.  Keep the
# prose here: the document is rendered from it, never edited by hand.


@dataclass(frozen=True)
class Entry:
    """One named thing of the vocabulary: a claim, verdict, mode, gradient class or exit code."""

    name: str
    kind: str
    meaning: str
    how: str = ""

    def text(self) -> str:
        """Plain text for a terminal: the name, its kind, what it means, how it is decided."""
        lines = [f"{self.name} ({self.kind})", "", _wrap(self.meaning)]
        if self.how:
            lines += ["", _wrap(self.how)]
        return "\n".join(lines)


def _wrap(text: str, width: int = 88) -> str:
    import textwrap

    return "\n".join(textwrap.fill(paragraph, width) for paragraph in text.split("\n"))


CONVENTIONS = (
    "A sample x is drawn from q, the policy being trained (pi_theta); p is the other policy "
    "(the reference pi_ref). The estimator sees one number, the ratio r = p(x)/q(x), or "
    "equivalently the log ratio t = log r = log p(x) - log q(x).",
    "An estimator is a function f(r) of that ratio alone; what it estimates is read off its "
    "expectation E_q[f(r)] over x ~ q.",
    "KL(q||p) = E_q[-log r] is written `kl_qp` (RL papers call it the reverse KL, "
    "KL(pi_theta || pi_ref)). KL(p||q) = E_q[r log r] is written `kl_pq` (the forward KL). "
    "They differ in general; a bias is always reported against both, named by direction.",
    "Schulman's estimators in this notation: k1 = -log r, k2 = (log r)^2 / 2, "
    "k3 = (r - 1) - log r. k1 and k3 have expectation KL(q||p) exactly; k2 only near p = q.",
    "A numeric implementation receives two arrays (logp, logq) of one float dtype, the log "
    "probabilities a trainer holds, and returns f in that same dtype.",
    "Gradients: q = q_theta depends on the parameters theta; p does not. A gradient is "
    "compared with grad_theta KL(q_theta||p) and grad_theta KL(p||q_theta) at the same theta.",
)

_POINTWISE_TEXT = {
    "zero_at_one": ("f(1) = 0: the estimate is zero when the two policies agree on the sample.",
                    "Exact evaluation of f at r = 1 (with the domain as written)."),
    "nonnegative": ("f(r) >= 0 for every r > 0: no single sample can give a negative KL estimate.",
                    "The infimum of f over (0, oo), from its critical points and end limits, piece by "
                    "piece; refuted by a value of r where f < 0, certified with interval arithmetic."),
    "unique_minimum_at_one": ("f(r) > f(1) for every r != 1: r = 1 is the only minimiser, so the "
                              "estimate is smallest exactly where the policies agree.",
                              "As for `nonnegative`, applied to f(r) - f(1) on each side of 1."),
    "convex": ("f is convex on (0, oo). Together with `zero_at_one` this makes E_q[f(r)] an "
               "f-divergence (nonnegative in expectation for every pair).",
               "The sign of f'' on each smooth piece, plus the direction of every kink (a clamp "
               "can break convexity); refuted by two values of r whose chord lies below f."),
    "subexponential_growth": ("|f(r)| <= A + B |log r|^k for some constants A, B, k, as r -> 0 and "
                              "r -> oo: f grows at most like a power of the log ratio, never like a "
                              "power of r itself. An estimator that fails it (k3 grows like r) can "
                              "spike on one rare token, and its variance is infinite as soon as "
                              "E_q[r^2] is (p with heavier tails than q).",
                              "Limits of f / |log r|^k at both ends; refuted by a growth witness, a "
                              "value of r where |f| exceeds every such bound's trend."),
    "linear_growth_in_log_ratio": ("|f(r)| <= A + B |log r|: f grows no faster than k1 does, so its "
                                   "variance is finite wherever k1's is.",
                                   "Limits of f / log r at r -> 0 and r -> oo."),
}
_EXPECTATION_TEXT = {
    "unbiased_kl_qp": ("E_q[f(r)] = KL(q||p) for every pair p, q where both sides are finite.",
                       "For smooth f this holds exactly when f(r) + log r = c (r - 1) for a constant c "
                       "(E_q[r - 1] = 0 for every pair). Proved by exact simplification; refuted by an "
                       "explicit pair of two-point distributions with exact E_q[f] and both KLs."),
    "unbiased_kl_pq": ("E_q[f(r)] = KL(p||q) for every pair p, q where both sides are finite.",
                       "Holds exactly when f(r) - r log r = c (r - 1); decided and refuted as "
                       "`unbiased_kl_qp`."),
    "locally_unbiased": ("E_q[f(r)] / KL -> 1 as p -> q (either KL: they agree to second order): "
                         "the estimator is unbiased to leading order for nearby policies.",
                         "For f twice differentiable at 1: f(1) = 0 and f''(1) = 1 (f'(1) is "
                         "irrelevant because E_q[r - 1] = 0)."),
}
_GRADIENT_TEXT = {
    "loss_grad_zero": ("Used as a loss (mode `loss`), the expected gradient is 0 for every pair: "
                       "the term trains nothing on average.",
                       "The per-sample gradient is -r f'(r) grad log q; its expectation vanishes "
                       "for every q exactly when r f'(r) is constant (k1)."),
    "loss_grad_kl_qp": ("Used as a loss (mode `loss`), the expected gradient equals "
                        "grad KL(q_theta||p).",
                        "Exactly when r f'(r) - log r is constant (k2)."),
    "loss_grad_kl_pq": ("Used as a loss (mode `loss`), the expected gradient equals "
                        "grad KL(p||q_theta), the forward KL.",
                        "Exactly when r f'(r) - r is constant (k3: its loss gradient follows the "
                        "forward KL, not the KL it estimates)."),
    "reward_grad_kl_qp": ("Used as a reward (mode `reward`: value detached, REINFORCE), the expected "
                          "gradient equals grad KL(q_theta||p).",
                          "The per-sample gradient is f(r) grad log q; exactly when f(r) + log r is "
                          "constant (k1)."),
}
_FLOATING_TEXT = {
    "fp_nonnegative": ("The implementation never returns a negative number (NaN counts as a "
                       "failure, -0.0 does not) for inputs in the domain.",
                       "Needs no reference value, so the 16-bit dtypes can be enumerated completely."),
    "fp_finite": ("The implementation returns a finite number whenever the exact f at those inputs "
                  "lies within the dtype's finite range (no overflow or NaN the mathematics does "
                  "not call for).", ""),
    "fp_accurate": ("The value is within the ulps budget of the exact f at the same inputs, or off by "
                    "less than the absolute tolerance. The ulps budget is `ACCURATE_ULPS` = 4 "
                    "(a careful float64 evaluation is within about 2 ulps, libm adds up to 1) unless "
                    "the estimator sets `fp_ulps`; the absolute tolerance is the dtype's smallest "
                    "normal number unless the estimator sets `fp_atol` (an RL penalty does not care "
                    "about many ulps at a value of 1e-28). Where |f| exceeds the finite range the "
                    "value must be +-inf or +-max with f's sign.",
                    "The reference is the exact f at the exact inputs: for float64 and float32, mpmath, "
                    "its precision doubled until two evaluations agree to 2^-80; for float16 and "
                    "bfloat16 (every pair enumerated), a certified float64 interval enclosure of f "
                    "(1e-12 relative or narrower), with mpmath at the exact inputs deciding the pairs "
                    "whose enclosure straddles a tolerance and re-checking every counterexample."),
    "fp_matches_expression": ("The implementation computes the formula it declares: a right formula "
                              "evaluated naively in the dtype passes, a different formula fails. "
                              "The value must lie within `MATCH_ULPS` = 32 ulps of f(t') for some "
                              "t' within 32 unit roundoffs of the exact log ratio t.",
                              "Looser than `fp_accurate` on purpose: it separates wrong formulas "
                              "from inaccurate evaluations of the right one."),
}
_BACKWARD_TEXT = {
    "fp_grad_finite": ("The gradient the implementation's own autograd computes in the dtype, with respect to "
                       "the policy log-prob logq (upstream gradient 1), is finite wherever the exact gradient "
                       "-g'(t) (g(t) = f(e^t), t = logp - logq) is finite and fits the dtype's finite range. A "
                       "clamp after `exp` keeps the value finite but back-propagates 0 x inf = NaN where `exp` "
                       "overflowed; `torch.where(cond, safe, exp(t) - 1 - t)` does the same through the branch "
                       "not taken. At a kink of a clamp (Min, Max, Abs) a finite gradient is required when both "
                       "one-sided derivatives fit.",
                       "The gradient: torch autograd for a torch implementation (exact tensors of the dtype, "
                       "`logq.requires_grad_()`, `out.backward(ones)`, `logq.grad` read back bit for bit), or "
                       "the estimator's `numeric_grad` (a NumPy emulation of that autograd). The exact gradient "
                       "is the symbolic derivative of the expression, enclosed by certified float64 interval "
                       "arithmetic (a Taylor model near t = 0), with mpmath at the exact inputs where an enclosure "
                       "straddles a tolerance and for every counterexample. float16 and bfloat16: every pair "
                       "enumerated (`proved`, or `refuted` with the number of failing pairs); float32 and "
                       "float64: the grid and hypothesis of the value claims (`tested` or `refuted`). An "
                       "implementation with no autograd (NumPy without `numeric_grad`): `undecided`, method "
                       f"`{NOT_APPLICABLE}`, never a pass."),
    "fp_grad_accurate": ("The autograd gradient is within the estimator's `fp_accurate` budget of the exact "
                         "gradient -g'(t): `fp_ulps` ulps (else 4), or `fp_atol`, or less than the dtype's "
                         "smallest normal number, and never of the opposite sign. Where the exact gradient is "
                         "beyond the finite range the gradient must be +-inf or +-max with its sign. At a kink of "
                         "a clamp (Min, Max, Abs), where the derivative is undefined, the gradient passes when it "
                         "lies between the two one-sided derivatives or within the budget of one of them (torch's "
                         "conventions all do: clamp passes the gradient at its bounds, maximum splits it at a "
                         "tie, abs gives 0 at 0).",
                         "As `fp_grad_finite`. One-sided derivatives at a kink are evaluated by mpmath 2^-300 "
                         "max(1, |t|) away from it, on each side (each piece is analytic there), and must agree "
                         "with the same at 2^-600: a derivative that grows without bound at the kink has no "
                         "finite one-sided value, and the pair is skipped as undefined (counted in the detail)."),
}
DOMAIN_TEXT = ("The domain is [-60, 0] unless `--domain LO,HI` (API: `domain=(LO, HI)`) says otherwise: "
               "LO < HI <= 0, HI finite, LO may be `-inf`. With LO = -inf every finite value <= HI is an "
               "input, and so is -inf, as masking produces it. A pair with logq = -inf is a token the policy "
               "never samples: no claim is made there (skipped, and counted). A pair with logp = -inf and "
               "logq finite has r = 0: the exact value is f(0) = lim f(e^t) as t -> -inf (it may be +inf: "
               "then `fp_finite` asks for no finite value and `fp_accurate` asks for +inf or +max), the exact "
               "gradient is the limit of -g'(t) (1 for k1 and k3), and `fp_matches_expression` is judged "
               "with `MATCH_ULPS` ulps of f(0) alone.")
_FLOATING_HOW = ("Per dtype: `float64`, `float32`, `float16`, `bfloat16` (NumPy, bfloat16 through "
                 "ml_dtypes). Inputs: logp and logq exactly representable in the dtype, in [-60, 0] "
                 "(or the `--domain`). "
                 "`NAME@dtype` names one dtype; `NAME` alone means all four. Search: a dense "
                 "deterministic grid weighted to r near 1, large |log r|, very negative log-probs "
                 "and subnormals, then hypothesis targeting the worst error; 16-bit dtypes can be "
                 "enumerated exhaustively (`proved`).")
_FUNCTION_TEXT = {
    "fp_agrees_float64": ("A library's own function, called on tensors of the dtype, returns a value within "
                          "`ACCURATE_ULPS` = 4 ulps of the dtype of the same function called on float64 tensors "
                          "at the same inputs, or off by less than the dtype's smallest normal number; where that "
                          "float64 value is beyond the dtype's finite range the value must be +-inf or +-max with "
                          "its sign (or within the budget), where it is NaN, NaN. It says the function loses "
                          "little to computing in the dtype. It cannot say the function is close to the exact f: "
                          "the float64 evaluation is the function's own (a wrong formula agrees with itself, and "
                          "a `.float()` inside makes the reference float32 arithmetic, which the verdict names).",
                          "`verify fuzz FILE.py:FUNC --framework torch`, with `fp_nonnegative` and `fp_finite` "
                          "(judged against the float64 evaluation instead of the exact f): no formula needed. The "
                          "function is called as written, its parameters bound by name, on (batch, sequence) "
                          "tensors. float16 and bfloat16: every pair of the domain in batches of whole rows "
                          "(`proved`, or `refuted` with the number of failing pairs); float32 and float64: the "
                          "grid of the value claims and seeded random pairs (`tested` or `refuted`). Every "
                          "counterexample is re-checked in its batch and alone (a (1, 1) tensor); a value that "
                          "differs between the two is reported (`shape_dependence`) and fails the gate."),
}

VERDICT_TEXT = {
    PROVED: "Shown for every input: by exact symbolic reasoning, a certified (interval) argument, "
            "or exhaustive enumeration of a 16-bit dtype. The method says which.",
    TESTED: "Searched hard and no counterexample found, but not exhaustively; the detail says how "
            "many inputs and how they were chosen (normal for float32/float64 claims).",
    REFUTED: "A counterexample is given that anyone can re-check by evaluating it: a value of r, two "
             "values of r (convexity), an input (logp, logq, dtype), or a pair of distributions "
             "with exact E_q[f] and both KLs. An estimator that does not declare the claim simply "
             "does not have the property; only a refuted declared claim fails a gate.",
    UNDECIDED: "Nothing settled within the time limit or the precision available. Never a guess: a "
               "timeout is never turned into refuted, nor an unproved claim into proved. Also the verdict "
               f"of a backward claim of an implementation with no autograd (method `{NOT_APPLICABLE}`).",
}

MODE_TEXT = {
    "loss": ("On-policy loss: x ~ q_theta and the KL term is differentiated by autograd through "
             "log q_theta(x) inside r. Per-sample gradient -r f'(r) grad log q.", ""),
    "reward": ("Reward: the value f(r) is detached and enters a REINFORCE estimator. Per-sample "
               "gradient f(r) grad log q.", ""),
    "loss_offpolicy": ("Off-policy loss without correction: x ~ q_old (the policy that generated the "
                       "batch), autograd through log q_theta, no importance weight (GRPO's KL term "
                       "after the first update). Compared with the gradients at q_theta.", ""),
    "loss_is_weighted": ("Importance-weighted loss: x ~ q_old, the value w f(r) with w = "
                         "q_theta/q_old not detached, autograd through both w and f. Its expectation "
                         "is E_{q_theta}[f] for every theta, so k1 and k3 give grad KL(q_theta||p).", ""),
    "straight_through": ("Straight-through (verl's \"+\" variants): the value of f, the gradient of k2 "
                         "(k2 - k2.detach() + f.detach()). Per-sample gradient -log r grad log q.", ""),
}

GRADIENT_OF_TEXT = {
    "kl_qp": "The expected gradient equals grad KL(q_theta||p) within the computed error bounds.",
    "kl_pq": "The expected gradient equals grad KL(p||q_theta) within the computed error bounds.",
    "zero": "The expected gradient is 0 within its error bound: the term trains nothing.",
    "multiple_of_kl_qp": "A constant multiple (not 1) of grad KL(q_theta||p): the right direction, "
                         "a different step size.",
    "multiple_of_kl_pq": "A constant multiple (not 1) of grad KL(p||q_theta).",
    "biased": "None of the above: a direction neither KL gives (cosines and norm ratios are reported).",
}

KL_NAMES = {
    "kl_qp": "KL(q||p) = E_q[-log r] with x ~ q: the reverse KL of RL papers, KL(pi_theta || pi_ref). "
             "k1 and k3 are unbiased for it.",
    "kl_pq": "KL(p||q) = E_q[r log r] with x ~ q: the forward KL. The loss gradient of k3 follows it.",
}

EXIT_CODES = {
    EXIT_OK: "Every gated claim (declared, or given with --claims) is proved or tested.",
    EXIT_REFUTED: ("A gated claim is refuted, two layers of the harness disagree (a harness bug), or a gradient "
                   "row is not what `verify gradients --expect` asks."),
    EXIT_USAGE: "Bad input: one line on stderr, no traceback (unknown claim, estimator, family, "
                "dtype or mode; unsafe or unparsable expression; unreadable file).",
    EXIT_UNDECIDED: "Nothing refuted, but a gated claim is undecided (with `verify all --strict`: "
                    "any claim).",
}

# Not a claim of its own to declare: the precondition of every floating-point claim.
DTYPE_CONTRACT = ("fp_returns_input_dtype",
                  "The implementation returns an array of the dtype it is given (or, for a library entry "
                  "whose `Usage.computes_in` names a dtype, that dtype). An implementation that returns "
                  "another dtype (an upcast to float64, say) or a Python list refutes every floating-point "
                  "claim of that dtype, with the input pair and the returned type as counterexample: its "
                  "values would hide the very rounding the claims are about.",
                  "Checked on every call the floating-point layer makes; the counterexample is re-checked "
                  "on the single input pair.")
USER_CODE = ("The user's code (a `FILE.py:NAME` or `module:NAME` target, an `Estimator` that is not the "
             "registry's own, a torch term, the pytest plugin's callable) is imported and run in a worker "
             "process the harness owns: its output is captured (never on stdout), its memory is capped, "
             "and one wall-clock limit (`--timeout`, default 600 s) covers all of it. If it exits, is "
             "killed, hangs or runs out of memory, the claims it left open are `undecided` with the "
             "one-line reason, and the exit code is never 0. This guards against accidents, not against "
             "code written to attack the harness.")

_KIND = {**{c: "pointwise claim" for c in POINTWISE}, **{c: "expectation claim" for c in EXPECTATION},
         **{c: "gradient claim" for c in GRADIENT}, **{c: "floating-point claim" for c in FLOATING},
         **{c: "backward-pass claim" for c in BACKWARD}}


def _entries() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for table in (_POINTWISE_TEXT, _EXPECTATION_TEXT, _GRADIENT_TEXT):
        for name, (meaning, how) in table.items():
            entries[name] = Entry(name, _KIND[name], meaning, how)
    for name, (meaning, how) in _FLOATING_TEXT.items():
        entries[name] = Entry(name, _KIND[name], meaning, (how + " " + _FLOATING_HOW).strip())
    for name, (meaning, how) in _BACKWARD_TEXT.items():
        entries[name] = Entry(name, _KIND[name], meaning, (how + " " + DOMAIN_TEXT).strip())
    for name, (meaning, how) in _FUNCTION_TEXT.items():
        entries[name] = Entry(name, "floating-point claim of a library's own function", meaning, how)
    entries[DTYPE_CONTRACT[0]] = Entry(DTYPE_CONTRACT[0], "contract of every floating-point claim",
                                       DTYPE_CONTRACT[1], DTYPE_CONTRACT[2])
    for name, meaning in VERDICT_TEXT.items():
        entries[name] = Entry(name, "verdict", meaning)
    for name, (meaning, how) in MODE_TEXT.items():
        entries[name] = Entry(name, "gradient mode", meaning, how)
    for name, meaning in GRADIENT_OF_TEXT.items():
        entries.setdefault(name, Entry(name, "gradient_of value", meaning))
    for name, definition in KL_NAMES.items():
        entries[name] = Entry(name, "convention; also a gradient_of value", definition,
                              "As a gradient_of value: " + GRADIENT_OF_TEXT[name])
    for code, meaning in EXIT_CODES.items():
        entries[str(code)] = Entry(f"exit {code}", "exit code", meaning)
    return entries


ENTRIES = _entries()


def lookup(name: str) -> Entry:
    """The reference entry for a claim, verdict, mode, gradient_of value or exit code.
    ``fp_finite@float16`` finds ``fp_finite``; an unknown name is a UsageError."""
    key = name.strip().removeprefix("exit ").partition("@")[0]
    if key in ENTRIES:
        return ENTRIES[key]
    if key in GRADIENT_OF_TEXT:  # kl_qp, kl_pq also name gradient_of values
        return Entry(key, "gradient_of value", GRADIENT_OF_TEXT[key])
    raise UsageError(f"nothing named {name!r} in the claims reference; try `kl-verify claims` for the list")


def _table(rows, header) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def reference_markdown() -> str:
    """docs/claims.md, in full (a test checks the committed file equals this)."""
    lines = ["# Claims reference", "",
             "<!-- Generated from verify/core/claims.py by `python -m verify claims > docs/claims.md`; "
             "edit the Python, not this file. -->", "",
             "Every name the harness uses for a property of an estimator, every verdict it gives, every "
             "way a KL term can enter training, and what the exit codes mean. `kl-verify claims NAME` "
             "prints one entry.", "", "## Conventions", ""]
    lines += [f"- {c}" for c in CONVENTIONS]
    sections = (("Pointwise claims (about f on r > 0)", POINTWISE,
                 "Decided by the symbolic layer for the expression f(r), as written: f must be defined "
                 "at every r > 0 (a logarithm of a non-positive number, a division by zero or a "
                 "fractional power of a negative base refutes every claim but `zero_at_one`)."),
                ("Expectation claims (over pairs p, q)", EXPECTATION,
                 "For every pair of distributions where both sides are finite. The exact layer "
                 "cross-checks the symbolic verdicts on its sweep of pairs."),
                ("Gradient claims", GRADIENT,
                 "q = q_theta, p fixed. Decided symbolically through the characterisations below; the "
                 "gradient layer computes the expected gradients exactly on fixed pairs and must agree."),
                ("Floating-point claims (about the numeric implementation)", FLOATING, _FLOATING_HOW),
                ("Backward-pass claims (about the implementation's gradient)", BACKWARD,
                 "With respect to the policy log-prob logq, per dtype like the value claims (`NAME@dtype`)."),
                ("Claims of a library's own function (no formula)", FUNCTION,
                 "`verify fuzz FILE.py:FUNC --framework torch` decides `fp_nonnegative`, `fp_finite` (against "
                 "the float64 evaluation) and this, per dtype, for the function called as written."))
    for title, names, intro in sections:
        lines += ["", f"## {title}", "", intro, ""]
        rows = [(f"`{n}`", ENTRIES[n].meaning,
                 ENTRIES[n].how.replace(_FLOATING_HOW, "").replace(DOMAIN_TEXT, "").strip()) for n in names]
        lines += _table(rows, ("claim", "meaning", "how it is decided"))
    lines += ["", "### The domain, and -inf", "", DOMAIN_TEXT]
    lines += ["", f"### The dtype contract: `{DTYPE_CONTRACT[0]}`", "", DTYPE_CONTRACT[1] + " " + DTYPE_CONTRACT[2],
              "", "### The user's code", "", USER_CODE]
    lines += ["", "## Verdicts", "",
              "Every claim gets exactly one. A wrong `proved` is the worst defect the harness can have; "
              "`undecided` is an honest answer.", ""]
    lines += _table([(f"`{v}`", VERDICT_TEXT[v]) for v in VERDICTS], ("verdict", "meaning"))
    lines += ["", "## Gradient modes", "",
              "How an estimator's value enters training (`verify gradients --mode`). Each mode's expected "
              "gradient is computed exactly (softmax: exact sums; normal: quadrature) and classified "
              "by `gradient_of`.", ""]
    lines += _table([(f"`{m}`", MODE_TEXT[m][0]) for m in MODE_TEXT], ("mode", "what the trainer does"))
    lines += ["", "### `gradient_of` values", ""]
    lines += _table([(f"`{g}`", GRADIENT_OF_TEXT[g]) for g in GRADIENT_OF_TEXT], ("value", "meaning"))
    lines += ["", "## Exit codes (`check`, `fuzz`, `all`)", ""]
    lines += _table([(str(c), EXIT_CODES[c]) for c in EXIT_CODES], ("code", "meaning"))
    lines += ["", "## Declaring claims", "",
              "An `Estimator` lists the claims it makes in `claims=(...)`; floating-point ones may name a "
              "dtype (`fp_finite@bfloat16`). The gate (`verify check`, `verify all`) fails only on a "
              "declared claim that is refuted. Every other claim is still decided and shown, as a "
              "property the estimator does or does not have.", ""]
    return "\n".join(lines)
