"""Verdict lines shared by the text output of `check` and `fuzz`: the verdict, then why
(an implementation's exception, how many 16-bit pairs fail and the worst error), then
the counterexample; a reason already shown is referred to, not repeated."""
from __future__ import annotations

import json

from verify.core.claims import REFUTED, UNDECIDED


def _worst(verdict) -> str:
    worst = verdict.worst
    if not isinstance(worst, dict) or "ulps" not in worst:
        return ""
    ulps, at = worst["ulps"], worst.get("ulps_at") or {}
    amount = f"{ulps:.4g}" if isinstance(ulps, float) else str(ulps)
    return f"; worst error {amount} ulps at (logp, logq) = ({at.get('logp')}, {at.get('logq')})"


def verdict_lines(claim: str, verdict, mark: str, width: int, shown: set) -> list[str]:
    """The lines of one claim; ``shown`` collects the reasons printed so far."""
    lines = [f"{mark} {claim:<{width}}{verdict.verdict:<10} {verdict.method}"]
    pad = f"  {'':<{width}}"
    reason = ""
    if verdict.verdict == UNDECIDED and verdict.detail:
        reason = " ".join(verdict.detail.split())[:300]
    elif verdict.verdict == REFUTED and verdict.method == "exhaustive enumeration":
        reason = verdict.detail.split(";")[0] + _worst(verdict)  # how many pairs fail: how unsafe it is
    elif verdict.verdict == REFUTED and verdict.method.startswith("dtype contract"):
        reason = verdict.detail
    if reason:
        lines.append(f"{pad}{'reason: as above' if reason in shown else reason}")
        shown.add(reason)
    if verdict.counterexample is not None:
        lines.append(f"{pad}counterexample: {json.dumps(verdict.counterexample, sort_keys=True, default=str)}")
    return lines


def output_note(output: str) -> str | None:
    """One stderr note about what the user's code printed (it never reaches stdout)."""
    lines = output.splitlines()
    if not lines:
        return None
    first = " ".join(lines[0].split())[:120]
    return f"kl-verify: note: the user's code printed {len(lines)} line(s), kept off stdout; first: {first!r}"


def value_text(value, spec: str) -> str:
    """A value of a command's JSON for its text: None as "undefined", a string (a decimal
    beyond float64, "inf") as is, a number in ``spec``."""
    if value is None:
        return "undefined"
    if isinstance(value, str):
        return value
    return format(value, spec)
