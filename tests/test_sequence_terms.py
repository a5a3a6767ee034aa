"""Sequence gradients of catalog entries and torch terms through their usage (issue 22),
against an independent oracle written here: torch autograd over the whole logits table.

The oracle enumerates every sequence itself (its own prefix order), builds
log q(y_t | y_<t) from ``log_softmax`` of the table (a leaf with gradient), calls the
library function of ``tests/data/library_functions.py`` (our re-implementations of the
libraries' code) on all sequences at once, and differentiates:

- a loss: c_t(y) = d(sum of the term's values)/d log q(y_t | y_<t) (the sample fixed);
- a reward: c_t(y) = R(y) = the sum of the values over the sequence, detached;
- the expected gradient: that of sum_y q(y) sum_t c_t(y) log q(y_t | y_<t), q(y) and c detached;
- the KL: sum_y q(y) sum_t (log q - log p), nothing detached.

It shares nothing with the engine (no prefix tree, no coefficients, no ball arithmetic).
Its own error is float64 rounding over a few hundred terms: 1e-12 absolute on a cosine or
a relative error is ~10^4 ulps of margin.  A library function that computes in float32
differs from its catalog entry (exact arithmetic) by float32 rounding of each per-token
gradient (~1e-7 relative): there the catalog row is compared within 1e-5 (~100 float32
ulps), and the torch-term row (the same float32 code) within 1e-12.
"""
from __future__ import annotations

import ast
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from verify.api import validate
from verify.api.sequences import sequences
from verify.cli import main
from verify.errors import UsageError

if os.environ.get("CI"):
    import torch  # noqa: F401 - under CI a missing torch must fail, not skip
else:
    torch = pytest.importorskip("torch")

LIBRARY_FILE = Path(__file__).parent / "data" / "library_functions.py"
ORACLE_TOLERANCE = 1e-12
FLOAT32_TOLERANCE = 1e-5
# the functions that compute in float32 inside (their docstrings say so)
FLOAT32_FUNCTIONS = {"compute_approx_kl", "roll_compute_approx_kl", "slime_compute_approx_kl", "KLEstimator"}


def _library_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_library_functions_sequences", LIBRARY_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LIBRARY = _library_module()


def _options(pairs):
    out = {}
    for text in pairs:
        key, _, value = text.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _call(function_name, options, logq, logp, old):
    """The library function called as its library calls it: (policy, reference) first."""
    function = getattr(LIBRARY, function_name)
    if isinstance(function, type):
        return function(**options)(logq, logp)
    if function_name == "grpo_per_token_kl":
        return function(logq, logp, old, **options)
    if function_name == "slime_compute_approx_kl":
        return function(logq, logp, old_log_probs=old, **options)
    return function(logq, logp, **options)


def _tables(vocabulary, length, scale, seed):
    rows = (vocabulary ** length - 1) // (vocabulary - 1)
    generator = np.random.default_rng(seed)
    return scale * generator.standard_normal((rows, vocabulary)), scale * generator.standard_normal((rows, vocabulary))


def oracle(p_logits, q_logits, term, usage):
    """(cosine, relative error) of the term's expected gradient with grad KL(q||p), by autograd."""
    rows, vocabulary = q_logits.shape
    contexts, length = [], 0
    while len(contexts) < rows:
        contexts += list(itertools.product(range(vocabulary), repeat=length))
        length += 1
    row_of = {prefix: i for i, prefix in enumerate(contexts)}
    theta = torch.tensor(q_logits, dtype=torch.float64, requires_grad=True)
    log_q_table = torch.log_softmax(theta, dim=-1)
    log_p_table = torch.log_softmax(torch.tensor(p_logits, dtype=torch.float64), dim=-1)
    sequences_ = list(itertools.product(range(vocabulary), repeat=length))
    rows_index = torch.tensor([[row_of[y[:t]] for t in range(length)] for y in sequences_])
    tokens = torch.tensor(sequences_)
    logq = log_q_table[rows_index, tokens]
    logp = log_p_table[rows_index, tokens]
    q_y = torch.exp(logq.sum(dim=1))
    kl = (q_y * (logq - logp).sum(dim=1)).sum()
    (grad_kl,) = torch.autograd.grad(kl, theta, retain_graph=True)
    # the per-token gradient c_t(y) of the sample, then E_q[sum_t c_t grad log q(y_t | y_<t)]
    # as the gradient of sum_y q(y) sum_t c_t log q(y_t | y_<t) with q(y) and c detached
    # (unit weights in the term's own dtype: a float32 term's backward rounds nothing)
    leaf = logq.detach().requires_grad_(True)
    values = term(leaf, logp.detach(), leaf.detach())
    if usage == "loss":
        (c,) = torch.autograd.grad(values.sum(), leaf)
    else:
        c = values.detach().to(torch.float64).sum(dim=1, keepdim=True).expand_as(leaf)
    objective = (q_y.detach()[:, None] * c.detach().to(torch.float64) * logq).sum()
    (grad,) = torch.autograd.grad(objective, theta)
    g, k = grad.numpy().ravel(), grad_kl.numpy().ravel()
    norm = np.linalg.norm(g)
    cosine = None if norm < 1e-13 * np.linalg.norm(k) else float(g @ k / (norm * np.linalg.norm(k)))
    return cosine, float(np.linalg.norm(g - k) / np.linalg.norm(k))


def _agrees(record, cosine, relative, tolerance):
    if cosine is None:
        assert record["cosine_to_grad_kl_qp"] is None
    else:
        assert abs(record["cosine_to_grad_kl_qp"] - cosine) <= record["cosine_to_grad_kl_qp_abs_error"] + tolerance
    assert abs(record["relative_error"] - relative) <= record["relative_error_abs_error"] + tolerance


# near: clamps idle; far: log r beyond +-11 on some tokens, so the output clamps of k3 bite
MODELS = {"near": _tables(3, 3, 0.7, 41), "far": _tables(3, 3, 6.0, 42)}
ENTRIES = [(name, function, options) for name, (function, options) in LIBRARY.CATALOG.items()]


@pytest.fixture(scope="module")
def catalog_rows():
    return {model: sequences(None, p_logits=p, q_logits=q, gradients="all").gradients
            for model, (p, q) in MODELS.items()}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("entry,function,options", ENTRIES, ids=[e[0] for e in ENTRIES])
def test_catalog_entry_matches_its_library_function(catalog_rows, model, entry, function, options):
    from estimators import registry

    p, q = MODELS[model]
    kwargs = _options(options)
    tolerance = FLOAT32_TOLERANCE if function in FLOAT32_FUNCTIONS else ORACLE_TOLERANCE
    for usage in registry()[entry].usage.kinds:
        cosine, relative = oracle(p, q, lambda a, b, c: _call(function, kwargs, a, b, c), usage)
        _agrees(catalog_rows[model][f"{entry}:{usage}"], cosine, relative, tolerance)


def test_the_far_model_reaches_the_clamps():
    """The far model is far enough that k3's output clamp at 10 acts (else it tests nothing more)."""
    p, q = MODELS["far"]
    log_ratio = (p - np.log(np.exp(p).sum(1, keepdims=True))) - (q - np.log(np.exp(q).sum(1, keepdims=True)))
    assert log_ratio.min() < -11.1 and log_ratio.max() > 11.1


def test_roll_full_is_the_sequence_sum_of_exact_position_kls():
    """ROLL's full-vocabulary KL (a function of logits, not a sampled token) has the gradient of k2 as a loss."""
    p, q = MODELS["near"]
    rows = sequences(None, p_logits=p, q_logits=q, gradients="roll_full").gradients
    for key in ("cosine_to_grad_kl_qp", "relative_error"):
        assert abs(rows["roll_full:loss"][key] - rows["k2_loss"][key]) <= (
            rows["roll_full:loss"][key + "_abs_error"] + rows["k2_loss"][key + "_abs_error"])


@pytest.fixture(scope="module")
def library_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sequence_terms") / "libraries_kl.py"
    path.write_text(LIBRARY_FILE.read_text())
    return path


TORCH_CASES = [("verl_low_var_kl", "loss"), ("openrlhf_k3", "reward"), ("nemo_rl_k3", "loss"),
               ("trl_grpo_k3_is_sequence", "loss"), ("slime_k3_is", "loss"), ("areal_k1", "reward")]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("entry,usage", TORCH_CASES)
def test_torch_term_matches_the_oracle(library_file, model, entry, usage):
    """The user's own function called on every sequence (isolated worker, bound by name)."""
    function, options = LIBRARY.CATALOG[entry]
    p, q = MODELS[model]
    result = sequences(None, p_logits=p, q_logits=q, term=f"{library_file}:{function}", usage=usage,
                       options=_options(options))
    cosine, relative = oracle(p, q, lambda a, b, c: _call(function, _options(options), a, b, c), usage)
    _agrees(result.gradients[f"{function}:{usage}"], cosine, relative, ORACLE_TOLERANCE)
    assert not result.undecided


def test_sequence_weight_is_found_and_agrees_with_the_catalog(library_file):
    """TRL's sequence-level weight mixes positions: the note says so, and the torch row equals the
    catalog's symbolic derivation of the same usage."""
    p, q = MODELS["near"]
    result = sequences(None, p_logits=p, q_logits=q, gradients="trl_grpo_k3_is_sequence",
                       term=f"{library_file}:grpo_per_token_kl",
                       options={"use_bias_correction_kl": True, "importance_sampling_level": "sequence"})
    torch_row, catalog_row = result.gradients["grpo_per_token_kl:loss"], result.gradients[
        "trl_grpo_k3_is_sequence:loss"]
    assert any("mixes positions" in note for note in result.notes)
    for key in ("cosine_to_grad_kl_qp", "relative_error"):
        assert abs(torch_row[key] - catalog_row[key]) <= torch_row[key + "_abs_error"] + catalog_row[key + "_abs_error"]
    # and it is not the per-token weight's gradient
    token = sequences(None, p_logits=p, q_logits=q, gradients="trl_grpo_k3_is").gradients["trl_grpo_k3_is:loss"]
    assert abs(token["cosine_to_grad_kl_qp"] - catalog_row["cosine_to_grad_kl_qp"]) > 1e-3


HOSTILE = '''
import os, sys, time, torch
def prints(logp, ref_logp):
    print("noise into stdout")
    return logp - ref_logp
def exits(logp, ref_logp):
    os._exit(0)
def hangs(logp, ref_logp):
    time.sleep(60)
    return logp - ref_logp
def batch_norm(logp, ref_logp):
    d = logp - ref_logp
    return d - d.mean()
'''


def test_hostile_terms(tmp_path, capsys):
    path = tmp_path / "hostile.py"
    path.write_text(HOSTILE)
    p, q = MODELS["near"]
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    tables = ["--p-logits", str(tmp_path / "p.npy"), "--q-logits", str(tmp_path / "q.npy")]
    # a print never reaches the JSON
    assert main(["sequences", *tables, "--term", f"{path}:prints", "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert "noise" not in captured.out and "printed" in captured.err
    validate(document)
    assert document["gradients"]["prints:loss"]["description"].startswith("the torch term")
    assert document["gradients"]["prints:loss"]["cosine_to_grad_kl_qp"] is None   # k1 as a loss: zero vector
    # an early exit and a hang end the command with a failure, never a pass: one line of text,
    # or one JSON document of kind "failure"
    for name, extra in (("exits", []), ("hangs", ["--timeout", "2"])):
        code = main(["sequences", *tables, "--term", f"{path}:{name}", *extra])
        captured = capsys.readouterr()
        assert code not in (0, 1) and captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1 and name in captured.err
        code = main(["sequences", *tables, "--term", f"{path}:{name}", "--json", *extra])
        document = json.loads(capsys.readouterr().out)
        assert code not in (0, 1) and document["kind"] == "failure"
    # a term that mixes batch rows has no per-sequence gradient
    assert main(["sequences", *tables, "--term", f"{path}:batch_norm"]) == 2
    assert "mixes batch rows" in capsys.readouterr().err


def test_bad_gradient_requests():
    p, q = MODELS["near"]
    with pytest.raises(UsageError, match="unknown catalog entry"):
        sequences(None, p_logits=p, q_logits=q, gradients="nope")
    with pytest.raises(UsageError, match="no library usage"):
        sequences(None, p_logits=p, q_logits=q, gradients=["k3"])   # an estimator, not a catalog entry
    with pytest.raises(UsageError, match="FILE.py:FUNC"):
        sequences(None, p_logits=p, q_logits=q, term="no_colon")


def test_ball_expression_bounds_hold_at_kinks_and_beyond():
    """Every catalog coefficient in ball arithmetic encloses mpmath's value (40 digits) at the
    ends and middle of each input ball, kinks and clamp edges included."""
    import mpmath
    import sympy as sp

    from estimators import registry
    from verify.layers.gradients.ball_expression import compile_ball, evaluate_ball
    from verify.layers.gradients.balls import Ball
    from verify.layers.gradients.symbols import LOG_RATIO, LOG_WEIGHT
    from verify.layers.gradients.usage import library_modes

    generator = np.random.default_rng(5)
    points = np.concatenate([generator.normal(scale=8, size=60), [0.0, 1e-9, -1e-9, 9.0, 10.0, -10.0, 11.0, -11.0,
                                                                  20.0, -20.0, np.nextafter(20.0, 0), 30.0, -30.0]])
    radii = np.abs(points) * 1e-15 + 1e-300
    for entry in registry().values():
        if entry.usage is None:
            continue
        for mode in library_modes(entry):
            expr = mode.coefficient.subs(LOG_WEIGHT, 0)
            ball = evaluate_ball(compile_ball(expr), Ball(points, radii))
            exact = sp.lambdify(LOG_RATIO, expr, "mpmath")
            with mpmath.workdps(40):
                for t, r, mid, rad in zip(points, radii, ball.mid, ball.rad):
                    for side in (-1, 0, 1):
                        value = exact(mpmath.mpf(t) + side * mpmath.mpf(r))
                        assert abs(value - mpmath.mpf(mid)) <= rad, (entry.name, mode.name, t, side)


# --------------------------------------------- found by a red-team review (each failed before its fix)

def _encloses(expr, mid, rad, points=(-1, 0, 1), dps=60):
    import mpmath
    import sympy as sp

    from verify.layers.gradients.ball_expression import compile_ball, evaluate_ball
    from verify.layers.gradients.balls import Ball
    from verify.layers.gradients.symbols import LOG_RATIO

    ball = evaluate_ball(compile_ball(expr), Ball(np.array([mid]), np.array([rad])))
    exact = sp.lambdify(LOG_RATIO, expr, "mpmath")
    with mpmath.workdps(dps):
        worst = max(abs(exact(mpmath.mpf(mid) + side * mpmath.mpf(rad)) - mpmath.mpf(float(ball.mid[0])))
                    for side in points)
    return worst <= ball.rad[0], float(ball.rad[0]), float(worst)


def test_a_reciprocal_of_a_huge_ball_keeps_its_radius():
    """1/x for |x| > 1e154: r / (|x| gap) overflowed to inf in the denominator and the radius vanished."""
    import sympy as sp

    from verify.layers.gradients.symbols import LOG_RATIO as t

    assert _encloses(sp.exp(699) / (sp.exp(t) + 1), 700.0, 1e-10)[0]
    assert _encloses(1 / (t * (sp.exp(t) - 1)), 700.0, 1.54e-13)[0]


def test_exp_of_a_ball_that_underflows_keeps_its_radius():
    """exp(x) with exp(mid) rounded to 0 or a subnormal: the input's radius still counts."""
    import sympy as sp
    from sympy.codegen.cfunctions import expm1

    from verify.layers.gradients.symbols import LOG_RATIO as t

    assert _encloses(sp.exp(t), -760.0, 20.0)[0]
    assert _encloses(sp.exp(40 * t), -19.0, 0.5)[0]
    assert _encloses(expm1(t), -760.0, 20.0)[0]


def test_nodes_the_ball_evaluator_cannot_bound_are_refused_when_compiled():
    import sympy as sp

    from verify.layers.gradients.ball_expression import Unsupported, compile_ball
    from verify.layers.gradients.symbols import LOG_RATIO as t

    for expr in (sp.I * t, sp.EulerGamma * t, sp.GoldenRatio + t, sp.Piecewise((t, sp.Xor(t > 0, t > 1)), (0, True)),
                 sp.sin(t), t ** sp.Rational(1, 3)):
        with pytest.raises(Unsupported):
            compile_ball(expr)


MIXERS = '''
import torch
def first_row(logp, ref_logp):
    d = logp - ref_logp
    return d * torch.exp(d[0:1, :1].detach())
def global_max(logp, ref_logp):
    d = logp - ref_logp
    return d - d.max().detach()
'''


@pytest.mark.parametrize("name", ["first_row", "global_max"])
def test_terms_that_read_other_rows_are_refused(tmp_path, capsys, name):
    """The batch probe changed only odd rows, by a small shuffle: a term reading row 0, or the
    batch's max, passed as per-sequence.  Both parities, moved far up and down, find them."""
    path = tmp_path / "mixers.py"
    path.write_text(MIXERS)
    p, q = MODELS["near"]
    with pytest.raises(UsageError, match="mixes batch rows"):
        sequences(None, p_logits=p, q_logits=q, term=f"{path}:{name}")


def test_an_expression_sympy_cannot_build_is_one_line(capsys):
    """Min of a complex log: sympy raised ValueError out of the parser (a traceback)."""
    code = main(["check", "Min(r, log(-1))"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad expression" in err


def test_catalog_rows_through_the_cli(tmp_path, capsys):
    """--gradients adds ENTRY:MODE rows to the text and to the JSON (valid against its schema)."""
    p, q = MODELS["near"]
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    tables = ["--p-logits", str(tmp_path / "p.npy"), "--q-logits", str(tmp_path / "q.npy")]
    assert main(["sequences", *tables, "--gradients", "verl_low_var_kl,trl_ppo_k1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    validate(document)
    assert list(document["gradients"]) == ["k1_loss", "k2_loss", "k3_loss", "k1_reward", "verl_low_var_kl:loss",
                                           "verl_low_var_kl:reward", "trl_ppo_k1:reward"]
    assert main(["sequences", *tables, "--gradients", "trl_ppo_k1"]) == 0
    assert "trl_ppo_k1:reward (the term as a per-token reward" in capsys.readouterr().out
    assert main(["sequences", *tables, "--usage", "reward"]) == 2
    assert "go with --term" in capsys.readouterr().err
