"""User code is untrusted: hostile implementations (exit early, sleep, print, upcast, return
a list, raise, use all memory) and torch terms each give a non-zero exit within the time
limit, a one-line reason, and --json output that still parses and validates."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from verify import api
from verify.api.isolation import run_isolated, send

HOSTILE = Path(__file__).parent / "data" / "hostile.py"
EXIT_AT_IMPORT = Path(__file__).parent / "data" / "exit_at_import.py"
LIMIT = 8  # seconds of wall clock given to the user's code
CLAIM = "fp_accurate@float32"


def _cli(*args, timeout=120):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "verify", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return done, time.monotonic() - started


# (estimator in tests/data/hostile.py, exit code, words of the one-line reason)
CASES = [
    ("exits", 3, "os._exit"),
    ("sysexits", 3, "exit(0)"),
    ("sleeps", 3, f"within {LIMIT} s"),
    ("raises", 3, "ValueError: no such luck"),
    ("upcast", 1, "returned float64 for float32 inputs"),
    ("aslist", 1, "for float32 inputs"),
]


@pytest.mark.parametrize("name, code, reason", CASES)
def test_a_hostile_implementation_never_passes_the_gate(name, code, reason):
    done, seconds = _cli("check", f"{HOSTILE}:{name}", "--claims", CLAIM, "--timeout", str(LIMIT), "--json")
    assert done.returncode == code, done.stderr
    document = json.loads(done.stdout)  # one JSON document, whatever the code printed
    api.validate(document)
    verdict = document["claims"][CLAIM]
    assert verdict["verdict"] == ("refuted" if code == 1 else "undecided")
    assert reason in verdict["detail"] + json.dumps(verdict.get("counterexample"))
    assert seconds < LIMIT + 60  # the limit holds (plus start-up and the symbolic layer: none here)
    text, _ = _cli("check", f"{HOSTILE}:{name}", "--claims", CLAIM, "--timeout", str(LIMIT))
    assert text.returncode == code
    assert any(reason in line for line in text.stdout.splitlines()), text.stdout  # the reason, in the text


def test_the_upcast_counterexample_rechecks():
    document = json.loads(_cli("check", f"{HOSTILE}:upcast", "--claims", CLAIM, "--json")[0].stdout)
    example = document["claims"][CLAIM]["counterexample"]
    sys.path.insert(0, str(HOSTILE.parent))
    try:
        import hostile
    finally:
        sys.path.remove(str(HOSTILE.parent))
    out = hostile.upcast_numeric(np.array([example["logp"]], np.float32), np.array([example["logq"]], np.float32))
    assert out.dtype == np.float64 == np.dtype(example["returned"])


def test_prints_stay_off_stdout():
    done, _ = _cli("fuzz", f"{HOSTILE}:prints", "--dtypes", "float32", "--profile", "dev", "--json")
    document = json.loads(done.stdout)
    api.validate(document)
    assert "debug" not in done.stdout and "printed" in done.stderr
    assert document["estimators"]["prints"][CLAIM]["verdict"] in ("refuted", "tested")


def test_fuzz_reports_an_early_exit():
    done, _ = _cli("fuzz", f"{HOSTILE}:exits", "--dtypes", "float32", "--json", "--timeout", str(LIMIT))
    assert done.returncode == 3
    document = json.loads(done.stdout)
    api.validate(document)
    assert "os._exit" in document["failures"]["exits"]


def test_a_file_that_exits_at_import_fails_in_one_line():
    done, _ = _cli("check", f"{EXIT_AT_IMPORT}:x", "--json")
    assert done.returncode == 3
    api.validate(json.loads(done.stdout))
    assert len(done.stderr.strip().splitlines()) == 1 and "os._exit" in done.stderr
    moments, _ = _cli("moments", f"{EXIT_AT_IMPORT}:x", "--p", "norm(0.1, 1)", "--q", "norm(0, 1)")
    assert moments.returncode == 3 and "os._exit" in moments.stderr


@pytest.mark.parametrize("term, reason", [("term_sleeps", f"within {LIMIT} s"), ("term_exits", "os._exit")])
def test_a_hostile_torch_term_never_passes(term, reason):
    done, seconds = _cli("gradients", f"{HOSTILE}:{term}", "--framework", "torch", "--json", "--timeout", str(LIMIT))
    assert done.returncode == 3, done.stderr
    assert reason in done.stderr and len(done.stderr.strip().splitlines()) == 1
    api.validate(json.loads(done.stdout))
    assert seconds < LIMIT + 60


def test_torch_term_json_validates_and_prints_stay_off_stdout():
    done, _ = _cli("gradients", f"{HOSTILE}:term_prints", "--framework", "torch", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    api.validate(document)
    assert document["kind"] == "term_gradients" and "printed" in done.stderr


def test_run_isolated_reports_every_way_out():
    messages = []

    def answer():
        print("to the captured output")
        send("partial")
        return 42

    outcome = run_isolated(answer, on_message=messages.append, seconds=30)
    assert (outcome.value, outcome.failure, messages) == (42, None, ["partial"])
    assert outcome.output == "to the captured output\n"
    assert "exit code 7" in run_isolated(os._exit, (7,), seconds=30).failure
    assert "MemoryError" not in (run_isolated(time.sleep, (60,), seconds=1).failure or "MemoryError")


def test_a_runaway_allocation_is_a_memory_error_not_the_oom_killer():
    def allocate():
        return bytearray(2 ** 31)

    outcome = run_isolated(allocate, seconds=30, memory_bytes=2 ** 30)
    assert outcome.failure is not None and "out of memory" in outcome.failure


def test_check_implementation_isolates_the_plugins_callable():
    def leaves(logp, logq):
        os._exit(0)

    verdicts = api.check_implementation(leaves, "r - 1 - log(r)", ["fp_finite"], ["float32"], profile="dev",
                                        timeout=30)
    assert verdicts["fp_finite@float32"].verdict == "undecided"
    assert "os._exit" in verdicts["fp_finite@float32"].detail
