"""The expected gradient of a user's own torch KL term (verify.layers.gradients.autograd, `verify gradients
--framework torch`).

Two independent computations of the same gradients: torch twins of the registered
estimators, differentiated by torch's autograd here, must equal the exact mode-as-data
results of verify.layers.gradients (mpmath sums) within both error bounds.  The KL terms of the
issue, written the way libraries write them, must get the gradient the mathematics says
(shared/LIBRARIES.md, "Known results"), on-policy and off-policy.

Outside CI these tests are skipped when torch is missing; with ``CI`` set a missing torch
is an error.
"""
from __future__ import annotations

import json
import os

import mpmath
import numpy as np
import pytest

from estimators import Estimator, registry
from verify.errors import UsageError
from verify.layers import gradients
from verify.cli import main


def _torch():
    if os.environ.get("CI"):
        import torch  # noqa: PLC0415 - in CI a missing torch must fail, never skip

        return torch
    return pytest.importorskip("torch")


torch = _torch()

from verify.layers.gradients import autograd  # noqa: E402

SOFTMAX_PAIRS = [p for p in gradients.PAIRS if p.family == "softmax"]
FAR = next(p for p in SOFTMAX_PAIRS if p.regime == "far")


# -------------------------------------------- KL terms as libraries write them

def k1(logp, ref_logp, old_logp):
    return logp - ref_logp


def k2(logp, ref_logp, old_logp):
    return (ref_logp - logp) ** 2 / 2


def k3(logp, ref_logp, old_logp):
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - 1 - log_ratio


@torch.no_grad()
def k3_no_grad(logp, ref_logp, old_logp):
    """A decorator that silently removes the KL term's gradient."""
    return k3(logp, ref_logp, old_logp)


def k3_straight_through(logp, ref_logp, old_logp):
    """verl's "k3+": the value of k3, the gradient of k2."""
    low_var = k2(logp, ref_logp, old_logp)
    return low_var - low_var.detach() + k3(logp, ref_logp, old_logp).detach()


def importance_weighted_k3(logp, ref_logp, old_logp):
    """TRL's bias correction at token level: k3 times pi/pi_old, NOT detached."""
    return torch.exp(logp - old_logp) * k3(logp, ref_logp, old_logp)


def importance_weighted_k2(logp, ref_logp, old_logp):
    return torch.exp(logp - old_logp) * k2(logp, ref_logp, old_logp)


def k3_clamped(logp, ref_logp, old_logp):
    """verl's low_var_kl: log ratio clamped to [-20, 20], the result to [-10, 10]."""
    log_ratio = torch.clamp(ref_logp - logp, -20, 20)
    return torch.clamp(torch.exp(log_ratio) - 1 - log_ratio, -10, 10)


def nemo_weighted_k3(logp, ref_logp, old_logp):
    """NeMo-RL's differentiable weight exp(logp - logp.detach()): value 1, gradient score."""
    return torch.exp(logp - logp.detach()) * k3(logp, ref_logp, old_logp)


def openrlhf_gradient_fix_k3(logp, ref_logp, old_logp):
    """OpenRLHF's fix: k3's value, gradient replaced by w k1 grad log pi, w = pi/pi_old
    clamped and detached (the clamp does not bite on these pairs)."""
    weight = torch.clamp(torch.exp(logp - old_logp), max=10.0).detach()
    return k3(logp, ref_logp, old_logp).detach() + weight * (logp - ref_logp).detach() * (logp - logp.detach())


def _verdicts(func, usage="loss", **given):
    report = autograd.gradient_of_term(func, usage=usage, **given)
    return {(r.mode, r.regime): r for r in report.results}


# (term, usage) -> expected gradient_of per (mode, regime) on the built-in softmax pairs
KNOWN = {
    # on-policy: E[grad k1] = 0; off-policy E_old[grad log q] = q_old - q, no KL gradient
    (k1, "loss"): {"loss": "zero", "loss_offpolicy": "biased"},
    (k2, "loss"): {"loss": "kl_qp", "loss_offpolicy": "biased"},
    (k3, "loss"): {"loss": "kl_pq", "loss_offpolicy": "biased"},
    (k3_no_grad, "loss"): {"loss": "zero", "loss_offpolicy": "zero"},
    (k3_straight_through, "loss"): {"loss": "kl_qp", "loss_offpolicy": "biased"},
    # w k3 has expectation KL(q_theta||p) under q_old for every theta: its gradient
    (importance_weighted_k3, "loss"): {"loss": "kl_qp", "loss_offpolicy": "kl_qp"},
    (importance_weighted_k2, "loss"): {"loss": "biased", "loss_offpolicy": "biased"},
    # value 1, gradient k3 score + grad k3: grad E_q[k3] on-policy only
    (nemo_weighted_k3, "loss"): {"loss": "kl_qp", "loss_offpolicy": "biased"},
    # E_old[(q/q_old) k1 score] = E_q[k1 score] = grad KL(q||p) at every q_old
    (openrlhf_gradient_fix_k3, "loss"): {"loss": "kl_qp", "loss_offpolicy": "kl_qp"},
    (k1, "reward"): {"reward": "kl_qp"},
    # E[k3 score] = grad KL(q||p) - grad KL(p||q)
    (k3, "reward"): {"reward": "biased"},
}


@pytest.mark.parametrize("term, usage", list(KNOWN), ids=[f"{t.__name__}-{u}" for t, u in KNOWN])
def test_library_terms_get_the_gradient_the_mathematics_says(term, usage):
    verdicts = _verdicts(term, usage)
    assert {key[0] for key in verdicts} == set(KNOWN[(term, usage)])
    for (mode, regime), row in verdicts.items():
        assert row.gradient_of == KNOWN[(term, usage)][mode], (mode, regime, row)
        assert row.identically_zero == (term is k3_no_grad)


def test_no_grad_term_is_said_to_be_identically_zero():
    row = _verdicts(k3_no_grad)[("loss", "near")]
    assert row.identically_zero and row.gradient_norm == 0.0 and row.cosine_kl_qp is None
    assert "identically zero" in row.note


def test_straight_through_k3_has_k2s_gradient_pointwise():
    """Not only in expectation: the whole gradient vector equals k2's."""
    for pair in SOFTMAX_PAIRS:
        for mode in ("loss", "loss_offpolicy"):
            a = _verdicts(k3_straight_through)[(mode, pair.regime)]
            b = _verdicts(k2)[(mode, pair.regime)]
            assert np.linalg.norm(np.subtract(a.gradient, b.gradient)) <= a.error + b.error


def test_importance_weighted_k1_is_kl_qp_off_policy():
    def importance_weighted_k1(logp, ref_logp, old_logp):
        return torch.exp(logp - old_logp) * (logp - ref_logp)

    verdicts = _verdicts(importance_weighted_k1)
    assert {row.gradient_of for row in verdicts.values()} == {"kl_qp"}


def test_expected_gradient_against_an_mpmath_sum_off_policy():
    """k2 off-policy: G_i = sum_x q_old(x) (-log r(x)) ([x = i] - q_i), at 50 digits."""
    pair = FAR
    with mpmath.workdps(50):
        def log_softmax(logits):
            values = [mpmath.mpf(v) for v in logits]
            normalizer = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in values))
            return [v - normalizer for v in values]

        logq, logp, logo = log_softmax(pair.theta), log_softmax(pair.p), log_softmax(pair.theta_old)
        q = [mpmath.exp(v) for v in logq]
        coefficient = [mpmath.exp(o) * (a - b) for o, a, b in zip(logo, logq, logp)]
        total = mpmath.fsum(coefficient)
        exact = np.array([float(coefficient[i] - q[i] * total) for i in range(len(q))])
    row = _verdicts(k2)[("loss_offpolicy", "far")]
    assert np.linalg.norm(np.subtract(row.gradient, exact)) <= row.error
    assert row.error < 1e-12 * np.linalg.norm(exact)  # a bound, and a useful one


# ----------------------------- two independent computations of the same gradients

def _f_of_log_ratio(name):
    """Torch twins of the registered estimators, as functions of t = log r."""
    twins = {
        "k1": lambda t: -t,
        "k2": lambda t: t * t / 2,
        "k3": lambda t: torch.expm1(t) - t,
        "kl_pq": lambda t: t * torch.exp(t) - torch.expm1(t),
        "k4": lambda t: torch.log1p(torch.expm1(t) ** 2),
        "abs": lambda t: torch.abs(t),
        "k3_clamped": lambda t: torch.clamp(torch.expm1(torch.clamp(t, -20, 20)) - torch.clamp(t, -20, 20), -10, 10),
    }
    return twins[name]


TWINS = ["k1", "k2", "k3", "kl_pq", "k4", "abs", "k3_clamped"]
# Two value functions with kinks (not registered: the catalog's library entries stand for them)
_KINKED = {
    "abs": Estimator(name="abs", expr="Abs(log(r))"),
    "k3_clamped": Estimator(
        name="k3_clamped",
        expr="Min(Max(exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20), -10), 10)"),
}


def _estimator(name):
    return _KINKED[name] if name in _KINKED else registry()[name]


def _term_for_mode(f, mode):
    """The torch term whose autograd semantics is verify.layers.gradients' mode (as data)."""
    def plain(logp, ref_logp, old_logp):
        return f(ref_logp - logp)

    def weighted(logp, ref_logp, old_logp):
        return torch.exp(logp - old_logp) * f(ref_logp - logp)

    def straight_through(logp, ref_logp, old_logp):
        t = ref_logp - logp
        low_var = t * t / 2
        return low_var - low_var.detach() + f(t).detach()

    return {"loss": (plain, "loss", "loss"), "reward": (plain, "reward", "reward"),
            "loss_offpolicy": (plain, "loss", "loss_offpolicy"),
            "loss_is_weighted": (weighted, "loss", "loss_offpolicy"),
            "straight_through": (straight_through, "loss", "loss")}[mode]


@pytest.mark.parametrize("name", TWINS)
def test_torch_twins_equal_the_exact_mode_as_data_gradients(name):
    estimator = _estimator(name)
    exact = {(r.mode, r.regime): r for r in gradients.gradient_details(estimator) if r.family == "softmax"}
    f = _f_of_log_ratio(name)
    for mode in gradients.MODE_NAMES:
        term, usage, term_mode = _term_for_mode(f, mode)
        rows = _verdicts(term, usage)
        for pair in SOFTMAX_PAIRS:
            ours, theirs = rows[(term_mode, pair.regime)], exact[(mode, pair.regime)]
            difference = np.linalg.norm(np.subtract(ours.gradient, theirs.gradient))
            assert difference <= ours.error + theirs.error, (mode, pair.regime, difference)
            assert ours.gradient_of == theirs.gradient_of, (mode, pair.regime)


def test_closed_form_references_agree_with_mpmath_sums():
    for pair in SOFTMAX_PAIRS:
        grad_qp, grad_pq, error_qp, error_pq, kl = autograd.reference_gradients(
            np.array([pair.theta]), np.array([pair.p]))
        exact_qp, exact_pq, exact_error_qp, exact_error_pq = gradients.reference_gradients(pair)
        assert np.linalg.norm(grad_qp[0] - exact_qp) <= error_qp[0] + exact_error_qp
        assert np.linalg.norm(grad_pq[0] - exact_pq) <= error_pq[0] + exact_error_pq
        assert abs(kl[0] - gradients.kl_qp_value(pair)) <= 1e-14


def test_torch_estimator_is_a_term():
    estimator = Estimator(name="k3_torch", expr="(r - 1) - log(r)", framework="torch",
                          numeric=lambda logp, logq: torch.expm1(logp - logq) - (logp - logq))
    rows = _verdicts(autograd.term_from_estimator(estimator))
    assert rows[("loss", "near")].gradient_of == "kl_pq"


# --------------------------------------------------------------- given logits

def test_clamped_k3_on_a_given_far_pair():
    """The far token (log r = 3.28, k3 = 22) is clamped at 10: its gradient vanishes there,
    so clamped k3 no longer gives grad KL(p||q); plain k3 does on the same pair."""
    given = {"policy": np.array(FAR.theta), "reference": np.array(FAR.p), "old": np.array(FAR.theta_old)}
    clamped = _verdicts(k3_clamped, **given)
    plain = _verdicts(k3, **given)
    assert clamped[("loss", "given")].gradient_of == "biased"
    assert plain[("loss", "given")].gradient_of == "kl_pq"
    # and the registered k3_clamped agrees, mode as data, on the same pair
    exact = {(r.mode, r.regime): r for r in gradients.gradient_details(_estimator("k3_clamped"), ["loss"])
             if r.family == "softmax"}
    assert np.linalg.norm(np.subtract(clamped[("loss", "given")].gradient, exact[("loss", "far")].gradient)) \
        <= clamped[("loss", "given")].error + exact[("loss", "far")].error


def test_per_position_results_and_their_mean():
    rng = np.random.default_rng(20261203)
    policy = rng.normal(size=(3, 40))
    reference = policy + 0.3 * rng.normal(size=(3, 40))
    rows = autograd.gradient_of_term(k3, policy=policy, reference=reference).results
    assert [(r.mode, r.position) for r in rows] == [("loss", 0), ("loss", 1), ("loss", 2), ("loss", "mean")]
    assert {r.gradient_of for r in rows} == {"kl_pq"}
    # each position alone gives the same row as inside the batch
    alone = autograd.gradient_of_term(k3, policy=policy[1], reference=reference[1]).results[0]
    assert alone.position is None
    assert np.linalg.norm(np.subtract(alone.gradient, rows[1].gradient)) <= alone.error + rows[1].error
    # the mean row's gradient is the concatenation over positions divided by T
    assert np.allclose(rows[3].gradient, np.concatenate([r.gradient for r in rows[:3]]) / 3, rtol=0, atol=1e-15)


def test_bad_terms_are_usage_errors():
    policy = np.zeros(5)
    with pytest.raises(UsageError, match="one value per token"):
        autograd.gradient_of_term(lambda a, b, c: (a - b).sum(), policy=policy, reference=policy)
    with pytest.raises(UsageError, match="raised ZeroDivisionError"):
        autograd.gradient_of_term(lambda a, b, c: 1 / 0, policy=policy, reference=policy)
    with pytest.raises(UsageError, match="torch tensor"):
        autograd.gradient_of_term(lambda a, b, c: 0.0, policy=policy, reference=policy)
    with pytest.raises(UsageError, match="finite"):
        autograd.gradient_of_term(k3, policy=np.array([0.0, -np.inf]), reference=policy[:2])
    with pytest.raises(UsageError, match="usage"):
        autograd.gradient_of_term(k3, usage="penalty")


def test_the_term_sees_the_shape_it_was_given():
    shapes = []

    def recording_k2(logp, ref_logp, old_logp):
        shapes.append(tuple(logp.shape))
        return k2(logp, ref_logp, old_logp)

    """(batch, sequence) tensors, the vocabulary on the batch axis: (V, 1) for the built-in
    pairs (one position), (V, T) for given (T, V) logits; the probes for mixing are (V, 2)."""
    autograd.gradient_of_term(recording_k2)
    assert set(shapes) == {(6, 1), (6, 2)}
    shapes.clear()
    autograd.gradient_of_term(recording_k2, policy=np.zeros((3, 5)), reference=np.ones((3, 5)))
    assert set(shapes) == {(5, 3), (5, 2)}


def test_a_float32_term_gets_float32_bounds_and_a_16_bit_one_is_refused():
    def k3_float32(logp, ref_logp, old_logp):  # OpenRLHF casts both log-probs to float32 first
        return k3(logp.float(), ref_logp.float(), old_logp.float())

    rows = _verdicts(k3_float32)
    ours, exact = rows[("loss", "far")], _verdicts(k3)[("loss", "far")]
    assert ours.gradient_of == "kl_pq" and "float32" in ours.note
    assert ours.error > 1000 * exact.error  # float32 rounding, not float64's
    assert np.linalg.norm(np.subtract(ours.gradient, exact.gradient)) <= ours.error + exact.error

    def k3_bfloat16(logp, ref_logp, old_logp):
        return k3(logp.bfloat16(), ref_logp.bfloat16(), old_logp.bfloat16())

    with pytest.raises(UsageError, match="bfloat16"):
        autograd.gradient_of_term(k3_bfloat16)


def test_non_finite_gradient_is_undecided():
    def log_of_negative(logp, ref_logp, old_logp):
        return torch.log(logp)  # logp < 0: NaN

    with pytest.raises(gradients.GradientUndecided, match="not finite"):
        autograd.gradient_of_term(log_of_negative)


# ------------------------------------------------------------------------ CLI

TERMS_FILE = '''
import torch

def k3(logp, ref_logp, old_logp):
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - 1 - log_ratio

@torch.no_grad()
def k3_no_grad(logp, ref_logp, old_logp):
    return k3(logp, ref_logp, old_logp)
'''


@pytest.fixture
def terms(tmp_path):
    path = tmp_path / "my_terms.py"
    path.write_text(TERMS_FILE)
    return path


def test_cli_json_on_the_built_in_pairs(terms, capsys):
    code = main(["gradients", f"{terms}:k3", "--framework", "torch", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["function"] == "k3" and out["usage"] == "loss" and out["framework"] == "torch"
    got = {(r["mode"], r["regime"]): r["gradient_of"] for r in out["results"]}
    assert got == {("loss", "near"): "kl_pq", ("loss", "far"): "kl_pq",
                   ("loss_offpolicy", "near"): "biased", ("loss_offpolicy", "far"): "biased"}
    assert set(out["results"][0]) == set(autograd.ROW_KEYS)


def test_cli_text_says_identically_zero(terms, capsys):
    assert main(["gradients", f"{terms}:k3_no_grad", "--framework", "torch"]) == 0
    assert "identically 0" in capsys.readouterr().out


def test_cli_gradient_gate_on_a_term(terms, capsys):
    """--expect gates a torch term: every row must give the expected gradient; a no_grad
    term passes only --expect zero, and each failing row is named on stderr."""
    assert main(["gradients", f"{terms}:k3_no_grad", "--framework", "torch", "--expect", "zero"]) == 0
    capsys.readouterr()
    assert main(["gradients", f"{terms}:k3_no_grad", "--framework", "torch", "--expect", "kl_qp"]) == 1
    err = capsys.readouterr().err
    assert "k3_no_grad: --expect kl_qp: loss near gives zero, not kl_qp" in err
    assert "loss_offpolicy far gives zero, not kl_qp" in err
    code = main(["gradients", f"{terms}:k3", "--framework", "torch", "--expect", "kl_pq", "--json"])
    out = json.loads(capsys.readouterr().out)
    # on-policy k3 as a loss follows grad KL(p||q); off-policy (weights 1) it is biased
    assert code == 1 and {r["gradient_of"] for r in out["results"] if r["mode"] == "loss"} == {"kl_pq"}


LIBRARY_FUNCTIONS = '''
import torch

def kl_penalty(logprob, ref_logprob, kl_penalty):
    """As verl names it: the option picks the estimator."""
    if kl_penalty == "k1":
        return logprob - ref_logprob
    if kl_penalty == "low_var_kl":
        kl = torch.clamp(ref_logprob - logprob, -20, 20)
        return torch.clamp(torch.exp(kl) - kl - 1, -10, 10)
    raise NotImplementedError(kl_penalty)

def compute_approx_kl(log_probs, log_probs_base, loss_mask=None, kl_estimator_type="k3"):
    """As SkyRL and ROLL name it: a mask third, options after."""
    log_ratio = log_probs - log_probs_base
    if kl_estimator_type == "k3":
        log_ratio = -log_ratio
        log_ratio = torch.exp(log_ratio) - 1 - log_ratio
    if loss_mask is not None:
        log_ratio = log_ratio * loss_mask
    return log_ratio

def unclear(a, b, c):
    return a - b

def two_references(ref_logprobs_a, ref_logprobs_b, logp):
    return logp - ref_logprobs_a
'''


@pytest.fixture
def library_functions(tmp_path):
    path = tmp_path / "library_kl.py"
    path.write_text(LIBRARY_FUNCTIONS)
    return path


def _loss_rows(out):
    return {r["regime"]: r["gradient_of"] for r in out["results"] if r["mode"] == "loss"}


def test_cli_binds_a_library_function_by_name(library_functions, capsys):
    """The library's own function runs as written: parameters bound by their names, options
    passed with --option; the mask third in SkyRL's signature is a mask (all ones), never the
    old log-probs (that misbinding made k3 look biased)."""
    target = f"{library_functions}:compute_approx_kl"
    assert main(["gradients", target, "--framework", "torch", "--json"]) == 0
    assert _loss_rows(json.loads(capsys.readouterr().out)) == {"near": "kl_pq", "far": "kl_pq"}  # k3 as a loss
    target = f"{library_functions}:kl_penalty"
    assert main(["gradients", target, "--framework", "torch", "--option", "kl_penalty=k1", "--json"]) == 0
    assert _loss_rows(json.loads(capsys.readouterr().out)) == {"near": "zero", "far": "zero"}  # E[grad k1] = 0
    assert main(["gradients", target, "--framework", "torch", "--option", "kl_penalty='low_var_kl'",
                 "--expect", "kl_pq"]) == 1  # clamped far away: not the forward KL there
    assert "kl_penalty: --expect kl_pq: loss far gives biased" in capsys.readouterr().err
    # names that say nothing: the positional convention (logp, ref_logp, old_logp)
    assert main(["gradients", f"{library_functions}:unclear", "--framework", "torch", "--json"]) == 0
    assert _loss_rows(json.loads(capsys.readouterr().out)) == {"near": "zero", "far": "zero"}


@pytest.mark.parametrize("arguments, message", [
    (["kl_penalty"], "cannot bind parameter 'kl_penalty' (it has no default): give --bind"),
    (["kl_penalty", "--option", "kl_penalty=k1", "--option", "beta=0.1"], "has no parameter 'beta'"),
    (["two_references"], "ref_logprobs_a, ref_logprobs_b all look like ref_logp"),
    (["compute_approx_kl", "--bind", "log_probs=policy"], "unknown role 'policy'"),
    (["compute_approx_kl", "--option", "kl_estimator_type"], "expected NAME=VALUE"),
    (["compute_approx_kl", "--bind", "log_probs=ref_logp"], "log_probs, log_probs_base all look like ref_logp"),
])
def test_cli_refuses_what_it_cannot_bind(library_functions, capsys, arguments, message):
    code = main(["gradients", f"{library_functions}:{arguments[0]}", "--framework", "torch", *arguments[1:]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("name, role", [
    ("logprob", "logp"), ("log_probs", "logp"), ("logprobs", "logp"), ("per_token_logps", "logp"),
    ("ref_logprob", "ref_logp"), ("log_probs_base", "ref_logp"), ("logprobs_reference", "ref_logp"),
    ("ref_per_token_logps", "ref_logp"), ("old_log_probs", "old_logp"), ("prev_logprobs", "old_logp"),
    ("generation_logprobs", "old_logp"), ("loss_mask", "mask"), ("action_mask", "mask"),
    ("kl_penalty", None), ("kl_estimator_type", None), ("prefix", None), ("baseline", None), ("logq", None),
    ("importance_sampling_level", None), ("ref", "ref_logp"), ("old", "old_logp"), ("logits", "logp"),
    ("ref_logits", "ref_logp"), ("base_value", None),
])
def test_what_a_parameter_name_says(name, role):
    """The names RL libraries give their arguments, and names that say nothing."""
    from verify.layers.gradients.binding import role_of

    assert role_of(name) == role


def test_option_and_bind_need_the_torch_framework(capsys):
    assert main(["gradients", "k3", "--option", "kl_penalty=k1"]) == 2
    assert "--option needs --framework torch" in capsys.readouterr().err


def test_cli_reward_with_p_and_q(terms, capsys):
    code = main(["gradients", f"{terms}:k3", "--framework", "torch", "--usage", "reward",
                 "--p", "categorical(logits=[0, 1, 2, 3])", "--q", "categorical(logits=[0, 0, 0, 0])", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(r["mode"], r["regime"], r["gradient_of"]) for r in out["results"]] == [("reward", "given", "biased")]


def test_cli_logits_file(terms, tmp_path, capsys):
    rng = np.random.default_rng(7)
    path = tmp_path / "logits.npz"
    np.savez(path, policy=rng.normal(size=(2, 30)), reference=rng.normal(size=(2, 30)),
             old=rng.normal(size=(2, 30)))
    code = main(["gradients", f"{terms}:k3", "--framework", "torch", "--logits", str(path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(r["mode"], r["position"]) for r in out["results"]] == [
        ("loss", 0), ("loss", 1), ("loss", "mean"), ("loss_offpolicy", 0), ("loss_offpolicy", 1),
        ("loss_offpolicy", "mean")]


def _write_pickled(path):
    np.save(path, np.array([{"policy": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not a zip"), "not an .npz archive"),
    (lambda p: np.savez(p, policy=np.zeros(3)), "no array 'reference'"),
    (lambda p: np.savez(p, policy=np.array([object()], dtype=object), reference=np.zeros(1)), "without pickles"),
    (lambda p: np.savez(p, policy=np.zeros(3), reference=np.zeros(4)), "differ in shape"),
    (lambda p: np.savez(p, policy=np.zeros((2, 2, 2)), reference=np.zeros((2, 2, 2))), "shape"),
    (lambda p: np.savez(p, policy=np.array(["a", "b"]), reference=np.zeros(2)), "real numbers"),
    (lambda p: np.savez(p, policy=np.zeros(3), reference=np.zeros(3), extra=np.zeros(3)), "unexpected array"),
], ids=["not-zip", "missing", "pickle", "shapes", "3d", "strings", "extra"])
def test_cli_bad_logits_files_are_one_line_exit_2(terms, tmp_path, capsys, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    code = main(["gradients", f"{terms}:k3", "--framework", "torch", "--logits", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, message", [
    (["gradients", "{terms}:missing", "--framework", "torch"], "no function named"),
    (["gradients", "k3", "--framework", "torch"], "FILE.py:FUNC"),
    (["gradients", "{terms}:k3", "--framework", "torch", "--mode", "loss"], "--usage"),
    (["gradients", "{terms}:k3", "--framework", "torch", "--p", "norm(0, 1)", "--q", "norm(0, 1)"], "categorical"),
    (["gradients", "{terms}:k3", "--framework", "torch", "--p", "categorical(logits=[0, 1])"], "both --p and --q"),
    (["gradients", "k3", "--usage", "reward"], "--framework torch"),
    (["gradients", "{terms}:k3", "--framework", "torch", "--usage", "penalty"], "usage"),
], ids=["missing-function", "not-a-file", "mode", "normal", "p-only", "numpy-usage", "bad-usage"])
def test_cli_bad_input_is_one_line_exit_2(terms, capsys, argv, message):
    code = main([a.format(terms=terms) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_identical_policy_and_reference_give_zero_without_ratios():
    logits = np.array([0.3, -1.0, 2.0])
    row = autograd.gradient_of_term(k3, policy=logits, reference=logits).results[0]
    assert row.gradient_of == "zero" and row.kl_qp == 0.0
    assert row.norm_ratio_kl_qp is None and row.multiple_kl_pq is None and row.cosine_kl_qp is None


def test_cli_without_torch_names_the_extra(terms, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch now raises ImportError
    code = main(["gradients", f"{terms}:k3", "--framework", "torch"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'kl-verify[torch]'" in err and len(err.strip().splitlines()) == 1
