"""The library's own function, run as written, agrees with its catalog entry row by row.

``tests/data/library_functions.py`` re-implements each library's KL function in our own
code, from the behaviour shared/LIBRARIES.md states (names, options, casts, clamps,
weights), in the shape the libraries call it: (batch, sequence) tensors, options as
keyword arguments, a class for AReaL.  It is copied to a file and checked as a user would check the real
one, ``verify gradients FILE.py:FUNC --framework torch --option ...``, with nothing but
options: the parameters are bound by their names.  Each catalog entry (NumPy, mode as
data, exact sums) and its library function (torch autograd) must give the same
``gradient_of`` in every mode on every pair, and cosines within 1e-3.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from verify.cli import main

if os.environ.get("CI"):
    import torch  # noqa: F401 - under CI a missing torch must fail, not skip
else:
    torch = pytest.importorskip("torch")

LIBRARY_FILE = Path(__file__).parent / "data" / "library_functions.py"
LIBRARIES = LIBRARY_FILE.read_text()


def _library_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_library_functions", LIBRARY_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



# catalog entry -> (function, options), kept beside the functions
CASES = _library_module().CATALOG
COSINE_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def library_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("libraries") / "libraries_kl.py"
    path.write_text(LIBRARIES)
    return path


def _run(capsys, arguments):
    code = main(arguments)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _options(options):
    return [flag for option in options for flag in ("--option", option)]


@pytest.mark.parametrize("entry", sorted(CASES))
def test_catalog_entry_agrees_with_its_library_function(entry, library_file, capsys):
    function, options = CASES[entry]
    catalog = {(row["mode"], row["regime"]): row for row in _run(capsys, ["gradients", entry, "--json"])["results"]
               if row["family"] == "softmax"}
    usages = {"reward"} if {mode for mode, _ in catalog} == {"reward"} else {"loss", "reward"}
    compared = 0
    for usage in sorted(usages):
        document = _run(capsys, ["gradients", f"{library_file}:{function}", "--framework", "torch", "--usage", usage,
                                 *_options(options), "--json"])
        for row in document["results"]:
            key = (row["mode"], row["regime"])
            if key not in catalog:
                continue
            ours = catalog[key]
            assert row["gradient_of"] == ours["gradient_of"], (entry, key, row, ours)
            for cosine in ("cosine_kl_qp", "cosine_kl_pq"):
                if ours[cosine] is None or row[cosine] is None:
                    assert ours[cosine] is None and row[cosine] is None, (entry, key, cosine)
                else:
                    assert abs(row[cosine] - ours[cosine]) <= COSINE_TOLERANCE, (entry, key, cosine, row, ours)
            compared += 1
    assert compared == len(catalog), (entry, compared, sorted(catalog))


def test_roll_full_as_a_full_vocabulary_term(library_file, capsys):
    """ROLL's "full": one value per position over the vocabulary: exactly grad KL(q||p)."""
    document = _run(capsys, ["gradients", f"{library_file}:roll_full_kl", "--framework", "torch", "--kind", "full",
                             "--json"])
    assert {(row["regime"], row["gradient_of"]) for row in document["results"]} == {("near", "kl_qp"),
                                                                                   ("far", "kl_qp")}
    catalog = _run(capsys, ["gradients", "roll_full", "--json"])["results"]
    assert {row["gradient_of"] for row in catalog if row["family"] == "softmax"} == {"kl_qp"}


def test_slime_float32_inside_a_float64_output_is_detected(library_file, capsys):
    """slime computes in float32 and returns float64 (its weight's dtype): the bound is
    float32's, and the note says so, instead of a false 'biased' next to cosine 1."""
    document = _run(capsys, ["gradients", f"{library_file}:slime_compute_approx_kl", "--framework", "torch",
                             "--option", "kl_loss_type=k3", "--option", "use_unbiased_kl=True", "--json"])
    rows = [row for row in document["results"] if row["mode"] == "loss"]
    assert {row["gradient_of"] for row in rows} == {"kl_qp"}
    assert all("detected precision: float32 inside its float64 output" in row["note"] for row in rows)


def test_a_sequence_level_weight_mixes_positions(library_file, capsys):
    """TRL's sequence-level weight reduces over the sequence axis: reported as mixing
    positions; on the built-in pairs (sequences of length 1) it is the token weight."""
    document = _run(capsys, ["gradients", f"{library_file}:grpo_per_token_kl", "--framework", "torch",
                             "--option", "use_bias_correction_kl=True", "--option",
                             "importance_sampling_level=sequence", "--json"])
    assert document["mixes"] == ["positions"]
    assert any("mixes positions" in note for note in document["notes"])
    assert {row["gradient_of"] for row in document["results"] if row["mode"] == "loss"} == {"kl_qp"}
    token = _run(capsys, ["gradients", f"{library_file}:grpo_per_token_kl", "--framework", "torch",
                          "--option", "use_bias_correction_kl=True", "--json"])
    assert token["mixes"] == []


def test_a_batch_normalisation_is_reported(tmp_path, capsys):
    path = tmp_path / "batch.py"
    path.write_text("def centred(logprob, ref_logprob):\n"
                    "    d = logprob - ref_logprob\n"
                    "    return d - d.mean(0, keepdim=True)\n")
    document = _run(capsys, ["gradients", f"{path}:centred", "--framework", "torch", "--json"])
    assert document["mixes"] == ["batch rows"]


def test_a_class_is_instantiated_with_its_options(library_file, capsys):
    document = _run(capsys, ["gradients", f"{library_file}:KLEstimator", "--framework", "torch", "--usage",
                             "reward", "--option", "kl_estimator=k3", "--option", "apply_clamp=False", "--json"])
    assert {row["gradient_of"] for row in document["results"]} == {"biased"}  # k3 in the reward
    default = _run(capsys, ["gradients", f"{library_file}:KLEstimator", "--framework", "torch", "--usage", "reward",
                            "--json"])
    assert {row["gradient_of"] for row in default["results"]} == {"kl_qp"}  # k1 in the reward


def test_a_class_refusing_its_options_is_one_line(tmp_path, capsys):
    path = tmp_path / "strict.py"
    path.write_text("class Strict:\n"
                    "    def __init__(self, kind):\n"
                    "        if kind != 'k1':\n"
                    "            raise ValueError('unknown kind')\n"
                    "    def __call__(self, logprob, ref_logprob):\n"
                    "        return logprob - ref_logprob\n")
    assert main(["gradients", f"{path}:Strict", "--framework", "torch"]) == 2
    err = capsys.readouterr().err
    assert "__init__ parameter 'kind' has no default" in err and len(err.strip().splitlines()) == 1
    assert main(["gradients", f"{path}:Strict", "--framework", "torch", "--option", "kind=k2"]) == 2
    err = capsys.readouterr().err
    assert "Strict(kind='k2') raised ValueError: unknown kind" in err and len(err.strip().splitlines()) == 1


def test_forgetting_the_torch_framework_says_so(library_file, capsys):
    assert main(["gradients", f"{library_file}:kl_penalty"]) == 2
    err = capsys.readouterr().err
    assert "is a function, not an Estimator" in err and "--framework torch" in err


def test_catalog_entry_on_a_given_pair(capsys):
    """A catalog entry on the user's own logits: the exact sums, no torch needed; the
    clamp of verl's low_var_kl bites on the far token (log r = 24 > 20)."""
    code = main(["gradients", "verl_low_var_kl", "--q", "categorical(logits=[0, 0, 0, -24])",
                 "--p", "categorical(logits=[0, 0, 0, 0])", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {row["regime"] for row in out["results"]} == {"given"}
    assert out["notes"] == ["no old policy given: loss_offpolicy not computed"]
    loss = next(row for row in out["results"] if row["mode"] == "loss")
    assert loss["gradient_of"] != "kl_pq"
    near = json.loads(_json_of(capsys, ["gradients", "verl_low_var_kl", "--q", "categorical(logits=[0, 0.1, 0, 0])",
                                        "--p", "categorical(logits=[0, 0, 0, 0])", "--json"]))
    assert next(row for row in near["results"] if row["mode"] == "loss")["gradient_of"] == "kl_pq"


def _json_of(capsys, arguments):
    assert main(arguments) == 0
    return capsys.readouterr().out


def test_given_logits_for_a_catalog_entry_per_position(tmp_path, capsys):
    rng = np.random.default_rng(20261207)
    path = tmp_path / "logits.npz"
    policy = rng.normal(size=(2, 5))
    np.savez(path, policy=policy, reference=policy + 0.2 * rng.normal(size=(2, 5)),
             old=policy + 0.05 * rng.normal(size=(2, 5)))
    out = json.loads(_json_of(capsys, ["gradients", "k2", "--logits", str(path), "--mode", "loss,loss_offpolicy",
                                       "--json"]))
    assert [(row["mode"], row["regime"], row["gradient_of"]) for row in out["results"]] == [
        ("loss", "given[0]", "kl_qp"), ("loss", "given[1]", "kl_qp"),
        ("loss_offpolicy", "given[0]", "biased"), ("loss_offpolicy", "given[1]", "biased")]


def test_torch_counts_cover_the_float32_entries_and_recompute():
    """verify/report/torch_counts.json (scripts/make_torch_counts.py) holds every catalog
    entry that computes in float32, and its counts over the suite's part of the domain are
    what the library functions give now, with torch."""
    import importlib.resources

    from estimators import registry
    from verify.api import fuzz
    from verify.api.inputs import parse_assignments

    measured = json.loads(importlib.resources.files("verify.report").joinpath("torch_counts.json").read_text())
    wanted = sorted(name for name, e in registry().items()
                    if e.usage is not None and e.usage.computes_in == "float32" and name in CASES)
    assert sorted(measured["counts"]) == wanted == sorted(measured["part"])
    assert tuple(measured["part_domain"]) == (-16.0, -2.0 ** -6)  # tests/conftest.py narrows every sweep to it
    for name, dtype in (("slime_k1", "float16"), ("openrlhf_k3", "bfloat16")):
        function, options = CASES[name]
        result = fuzz(f"{LIBRARY_FILE}:{function}", [dtype], framework="torch",
                      options=parse_assignments(options, "--option", literal=True)).to_json()
        verdict = result["claims"][f"fp_nonnegative@{dtype}"]
        count = 0 if verdict["verdict"] == "proved" else int(verdict["detail"].split(" of ")[0].replace(",", ""))
        assert count == measured["part"][name][dtype], (name, dtype, count)
