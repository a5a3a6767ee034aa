"""verify sequences (issue 22): the engine's exact sequence-level values against an
independent mpmath enumeration written here (a loop over every sequence, nothing shared
with verify.layers.gradients.sequence_models), and the command's input checks and JSON.

Every comparison is |engine - reference| <= the engine's own abs_error (plus the
reference's error, far below: 40 digits; the finite differences of KL(q||p) use a step of
1e-12 at 40 digits, so their error is about 1e-24).  The models are random tables drawn
here from fixed seeds (``_model``).
"""
from __future__ import annotations

import itertools
import json

import mpmath
import numpy as np
import pytest

from verify.api import sequences, validate
from verify.cli import main

DPS = 40
REFERENCE_ERROR = 1e-20          # the mpmath references' error is far below this
FD_STEP = mpmath.mpf("1e-12")
LAMBDA_GRID = [mpmath.mpf(k) / 8 for k in range(-8, 33)]   # -1 .. 4


def _model(seed, vocabulary, length, spread, impossible_q=0, top_k=None, p_zero_where_q=False):
    """(p_logits, q_logits): q random normal; p = q + spread * noise; ``impossible_q`` -inf
    entries of q per 10 rows (where p too is impossible unless ``top_k``); ``top_k``: q keeps
    its top-k logits per row (p keeps all); ``p_zero_where_q``: one -inf in p where q > 0."""
    rng = np.random.default_rng(seed)
    rows = (vocabulary ** length - 1) // (vocabulary - 1)
    q = rng.normal(size=(rows, vocabulary))
    p = q + spread * rng.normal(size=(rows, vocabulary))
    for row in range(0, rows, max(1, 10 // max(impossible_q, 1))) if impossible_q else ():
        q[row, rng.integers(vocabulary)] = -np.inf
        p[row] = np.where(np.isinf(q[row]), -np.inf, p[row])
    if top_k is not None:
        cut = np.sort(q, axis=1)[:, -top_k][:, None]
        q = np.where(q >= cut, q, -np.inf)
    if p_zero_where_q:
        p[0, int(np.argmax(q[0]))] = -np.inf
    return p, q


# ---------------------------------------------------------------------- the mpmath reference


def _log_softmax(row):
    finite = [mpmath.mpf(float(x)) for x in row if np.isfinite(x)]
    top = max(finite)
    total = top + mpmath.log(mpmath.fsum(mpmath.exp(x - top) for x in finite))
    return [mpmath.mpf(float(x)) - total if np.isfinite(x) else None for x in row]


def _row(prefix, vocabulary):
    number = 0
    for y in prefix:
        number = number * vocabulary + y
    return (vocabulary ** len(prefix) - 1) // (vocabulary - 1) + number


def _f(name, r):
    if r == 0:
        return mpmath.inf
    if name == "k1":
        return -mpmath.log(r)
    if name == "k2":
        return mpmath.log(r) ** 2 / 2
    return r - 1 - mpmath.log(r)


def _kl_qp(log_q, log_p, vocabulary, length):
    total = []
    for sequence in itertools.product(range(vocabulary), repeat=length):
        rows = [_row(sequence[:t], vocabulary) for t in range(length)]
        lq = [log_q[row][y] for row, y in zip(rows, sequence)]
        if any(v is None for v in lq):
            continue
        lp = [log_p[row][y] for row, y in zip(rows, sequence)]
        if any(v is None for v in lp):
            return mpmath.inf
        total.append(mpmath.exp(mpmath.fsum(lq)) * (mpmath.fsum(lq) - mpmath.fsum(lp)))
    return mpmath.fsum(total)


def _variance(weights, values):
    mean = mpmath.fsum(w * x for w, x in zip(weights, values))
    return mean, mpmath.fsum(w * (x - mean) ** 2 for w, x in zip(weights, values))


def reference(p_logits, q_logits, names=("k1", "k2", "k3")):
    """Everything the engine computes, by a loop over every sequence at 40 digits."""
    vocabulary = q_logits.shape[1]
    length = round(np.log(q_logits.shape[0] * (vocabulary - 1) + 1) / np.log(vocabulary))
    with mpmath.workdps(DPS):
        log_q = [_log_softmax(row) for row in q_logits]
        log_p = [_log_softmax(row) for row in p_logits]
        out = {"kl_qp": _kl_qp(log_q, log_p, vocabulary, length)}
        kl_pq, weights, per_sequence = [], [], []
        for sequence in itertools.product(range(vocabulary), repeat=length):
            rows = [_row(sequence[:t], vocabulary) for t in range(length)]
            lq = [log_q[row][y] for row, y in zip(rows, sequence)]
            lp = [log_p[row][y] for row, y in zip(rows, sequence)]
            if all(v is not None for v in lp):
                kl_pq.append(mpmath.inf if any(v is None for v in lq)
                             else mpmath.exp(mpmath.fsum(lp)) * (mpmath.fsum(lp) - mpmath.fsum(lq)))
            if any(v is None for v in lq):
                continue
            weights.append(mpmath.exp(mpmath.fsum(lq)))
            ratios = [mpmath.mpf(0) if b is None else mpmath.exp(b - a) for a, b in zip(lq, lp)]
            per_sequence.append((sequence, rows, ratios))
        out["kl_pq"] = mpmath.inf if mpmath.inf in kl_pq else mpmath.fsum(kl_pq)
        assert abs(mpmath.fsum(weights) - 1) < 1e-30
        for name in names:
            mc = [mpmath.fsum(_f(name, r) for r in ratios) for _, _, ratios in per_sequence]
            rb = []
            for sequence, rows, _ in per_sequence:
                expected = []
                for row in rows:   # E_{y' ~ q(.|u)} f(r(u, y')), summed over the row's possible tokens
                    terms = [mpmath.exp(a) * _f(name, mpmath.mpf(0) if b is None else mpmath.exp(b - a))
                             for a, b in zip(log_q[row], log_p[row]) if a is not None]
                    expected.append(mpmath.fsum(terms))
                rb.append(mpmath.fsum(expected))
            if any(mpmath.isinf(x) for x in mc):
                out[name] = {"mc_mean": mpmath.inf, "mc_variance": mpmath.inf, "rb_mean": mpmath.inf,
                             "rb_variance": mpmath.inf}
                continue
            mc_mean, mc_var = _variance(weights, mc)
            rb_mean, rb_var = _variance(weights, rb)
            out[name] = {"mc_mean": mc_mean, "mc_variance": mc_var, "rb_mean": rb_mean, "rb_variance": rb_var}
        if not mpmath.isinf(out["kl_qp"]):
            a = [mpmath.fsum(-mpmath.log(r) for r in ratios) for _, _, ratios in per_sequence]
            b = [mpmath.fsum(r - 1 for r in ratios) for _, _, ratios in per_sequence]
            out["cv_variance"] = lambda lam: _variance(weights, [x + lam * y for x, y in zip(a, b)])[1]
            _, var_a = _variance(weights, a)
            _, var_b = _variance(weights, b)
            covariance = mpmath.fsum(w * x * y for w, x, y in zip(weights, a, b)) - \
                mpmath.fsum(w * x for w, x in zip(weights, a)) * mpmath.fsum(w * y for w, y in zip(weights, b))
            out["optimal_lambda"] = -covariance / var_b
            out["variance_at_optimal"] = var_a - covariance ** 2 / var_b
            out["gradients"] = _gradients(log_q, per_sequence, weights, q_logits, p_logits, vocabulary, length)
    return out


def _gradients(log_q, per_sequence, weights, q_logits, p_logits, vocabulary, length):
    """Per-term expected gradient (score-function sums per sequence) and grad KL(q||p) by
    central finite differences of the enumerated KL in q's logits."""
    size = q_logits.size
    coefficients = {
        "k1_loss": lambda ratios, t: 1,
        "k2_loss": lambda ratios, t: -mpmath.log(ratios[t]),
        "k3_loss": lambda ratios, t: 1 - ratios[t],
        "k1_reward": lambda ratios, t: mpmath.fsum(-mpmath.log(r) for r in ratios),
        "reward_to_go": lambda ratios, t: mpmath.fsum(-mpmath.log(r) for r in ratios[t:]),
    }
    vectors = {name: [mpmath.mpf(0)] * size for name in coefficients}
    for weight, (sequence, rows, ratios) in zip(weights, per_sequence):
        for t, (row, y) in enumerate(zip(rows, sequence)):
            for v in range(vocabulary):
                if log_q[row][v] is None:
                    continue
                score = (1 if v == y else 0) - mpmath.exp(log_q[row][v])
                for name, coefficient in coefficients.items():
                    vectors[name][row * vocabulary + v] += weight * coefficient(ratios, t) * score
    log_p = [_log_softmax(row) for row in p_logits]
    theta = [[mpmath.mpf(float(x)) for x in row] for row in q_logits]
    exact_kl = []
    for index in range(size):
        row, v = divmod(index, vocabulary)
        if not np.isfinite(q_logits[row, v]):
            exact_kl.append(mpmath.mpf(0))
            continue
        values = []
        for step in (FD_STEP, -FD_STEP):
            moved = [list(r) for r in theta]
            moved[row][v] += step
            moved_log_q = [_log_softmax_mp(r) for r in moved]
            values.append(_kl_qp(moved_log_q, log_p, vocabulary, length))
        exact_kl.append((values[0] - values[1]) / (2 * FD_STEP))
    vectors["grad_kl_qp"] = exact_kl
    return vectors


def _log_softmax_mp(row):
    finite = [x for x in row if mpmath.isfinite(x)]
    top = max(finite)
    total = top + mpmath.log(mpmath.fsum(mpmath.exp(x - top) for x in finite))
    return [x - total if mpmath.isfinite(x) else None for x in row]


def _norm(vector):
    return mpmath.sqrt(mpmath.fsum(x * x for x in vector))


# ---------------------------------------------------------------------- the models

MODELS = {
    "near": dict(seed=1, vocabulary=3, length=3, spread=0.2),
    "far_with_impossible_tokens": dict(seed=2, vocabulary=3, length=3, spread=1.5, impossible_q=3),
    "top_k_truncated_q": dict(seed=3, vocabulary=4, length=2, spread=0.7, top_k=2),
    "binary_long": dict(seed=4, vocabulary=2, length=5, spread=0.9),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    p, q = _model(**MODELS[request.param])
    return request.param, p, q, sequences(None, p_logits=p, q_logits=q), reference(p, q)


def _close(value, error, exact, name):
    assert value is not None and error is not None, name
    assert abs(mpmath.mpf(value) - exact) <= error + REFERENCE_ERROR, (name, value, error, exact)


def test_kls_and_estimator_moments_match_the_enumeration(case):
    name, _, _, result, ref = case
    _close(result.kl_qp, result.kl_qp_abs_error, ref["kl_qp"], "kl_qp")
    if mpmath.isinf(ref["kl_pq"]):
        assert result.kl_pq == float("inf")
    else:
        _close(result.kl_pq, result.kl_pq_abs_error, ref["kl_pq"], "kl_pq")
    for estimator in ("k1", "k2", "k3"):
        for key in ("mc_mean", "mc_variance", "rb_mean", "rb_variance"):
            record = result.estimators[estimator]
            _close(record[key], record[key + "_abs_error"], ref[estimator][key], f"{name} {estimator} {key}")


def test_rao_blackwellised_keeps_the_mean_and_lowers_the_variance(case):
    _, _, _, result, ref = case
    for estimator in ("k1", "k2", "k3"):
        record = result.estimators[estimator]
        assert abs(record["rb_mean"] - record["mc_mean"]) <= record["rb_mean_abs_error"] + record["mc_mean_abs_error"]
        assert record["rb_variance"] + record["rb_variance_abs_error"] < record["mc_variance"] - \
            record["mc_variance_abs_error"], estimator
        assert ref[estimator]["rb_variance"] < ref[estimator]["mc_variance"]


def test_control_variate_is_optimal_over_a_grid(case):
    _, _, _, result, ref = case
    control = result.control_variate
    _close(control["optimal_lambda"], control["optimal_lambda_abs_error"], ref["optimal_lambda"], "lambda")
    _close(control["variance_at_optimal"], control["variance_at_optimal_abs_error"], ref["variance_at_optimal"],
           "variance at optimal")
    _close(control["variance_k1"], control["variance_k1_abs_error"], ref["cv_variance"](0), "variance k1")
    _close(control["variance_k3"], control["variance_k3_abs_error"], ref["cv_variance"](1), "variance k3")
    lowest = control["variance_at_optimal"] - control["variance_at_optimal_abs_error"]
    for lam in LAMBDA_GRID:
        assert lowest <= ref["cv_variance"](lam) + REFERENCE_ERROR, lam
    # and it is the minimum: a step of 1/8 away costs Var B / 64 > 0
    assert ref["variance_at_optimal"] < min(ref["cv_variance"](lam) for lam in LAMBDA_GRID)


def test_gradients_against_grad_kl_of_the_sequence(case):
    name, _, _, result, ref = case
    vectors = ref["gradients"]
    exact = vectors["grad_kl_qp"]
    with mpmath.workdps(DPS):
        # the reward to go sum_{s>=t} k1_s is grad KL(q||p) of the sequence (Tang & Munos 2025)
        assert _norm([a - b for a, b in zip(vectors["reward_to_go"], exact)]) < 1e-18 * _norm(exact)
        # k1 as a per-token loss: zero expected gradient
        assert _norm(vectors["k1_loss"]) < 1e-30
        for term in ("k2_loss", "k3_loss", "k1_reward"):
            vector = vectors[term]
            cosine = mpmath.fsum(a * b for a, b in zip(vector, exact)) / (_norm(vector) * _norm(exact))
            relative = _norm([a - b for a, b in zip(vector, exact)]) / _norm(exact)
            record = result.gradients[term]
            _close(record["cosine_to_grad_kl_qp"], record["cosine_to_grad_kl_qp_abs_error"], cosine,
                   f"{name} {term} cosine")
            _close(record["relative_error"], record["relative_error_abs_error"], relative, f"{name} {term} relative")
    assert result.gradients["k1_loss"]["cosine_to_grad_kl_qp"] is None
    assert result.gradients["k1_loss"]["relative_error"] == 1.0
    # the summed k1 as a reward is grad KL(q||p) (0 within its bound); the per-token k3 loss is not
    reward = result.gradients["k1_reward"]
    assert reward["relative_error"] <= reward["relative_error_abs_error"]
    k3 = result.gradients["k3_loss"]
    assert k3["relative_error"] - k3["relative_error_abs_error"] > 0.01


def test_infinite_kl_is_decided_exactly_and_never_nan():
    p, q = _model(5, 3, 3, 0.5, p_zero_where_q=True)
    result = sequences("k1,k3", p_logits=p, q_logits=q)
    ref = reference(p, q, names=("k1", "k3"))
    assert mpmath.isinf(ref["kl_qp"]) and result.kl_qp == float("inf")
    _close(result.kl_pq, result.kl_pq_abs_error, ref["kl_pq"], "kl_pq")
    for estimator in ("k1", "k3"):
        assert result.estimators[estimator]["mc_mean"] == float("inf")
        assert result.estimators[estimator]["rb_variance"] == float("inf")
    assert result.control_variate["optimal_lambda"] is None
    assert result.control_variate["variance_at_optimal"] == float("inf")
    assert all(record["cosine_to_grad_kl_qp"] is None for record in result.gradients.values())
    document = result.to_json()
    validate(document)
    assert "NaN" not in json.dumps(document)


def test_estimator_with_a_finite_limit_at_zero():
    """f = (r - 1)^2 is 1 at r = 0: the sums stay finite where p = 0 < q."""
    p, q = _model(6, 2, 3, 0.5, p_zero_where_q=True)
    result = sequences("(r - 1)**2", p_logits=p, q_logits=q)
    record = result.estimators["(r - 1)**2"]
    with mpmath.workdps(DPS):
        log_q, log_p = [_log_softmax(row) for row in q], [_log_softmax(row) for row in p]
        values, weights = [], []
        for sequence in itertools.product(range(2), repeat=3):
            rows = [_row(sequence[:t], 2) for t in range(3)]
            lq = [log_q[row][y] for row, y in zip(rows, sequence)]
            lp = [log_p[row][y] for row, y in zip(rows, sequence)]
            weights.append(mpmath.exp(mpmath.fsum(lq)))
            values.append(mpmath.fsum((1 if b is None else mpmath.exp(b - a) - 1) ** 2 for a, b in zip(lq, lp)))
        mean, variance = _variance(weights, values)
    _close(record["mc_mean"], record["mc_mean_abs_error"], mean, "mean")
    _close(record["mc_variance"], record["mc_variance_abs_error"], variance, "variance")


# ---------------------------------------------------------------------- command line and JSON


@pytest.fixture()
def tables(tmp_path):
    p, q = _model(7, 3, 2, 0.5)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    return tmp_path, p, q


def test_cli_json_validates_and_equals_the_api(tables, capsys):
    folder, p, q = tables
    code = main(["sequences", "k1,k3", "--p-logits", str(folder / "p.npy"), "--q-logits", str(folder / "q.npy"),
                 "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    validate(document)
    assert document["kind"] == "sequences" and document["sequences"] == 9
    assert document == json.loads(json.dumps(sequences("k1,k3", p_logits=p, q_logits=q).to_json()))
    assert main(["sequences", "--p-logits", str(folder / "p.npy"), "--q-logits", str(folder / "q.npy")]) == 0
    text = capsys.readouterr().out
    assert "KL(q||p)" in text and "optimal_lambda" in text and "k3_loss" in text


def _bad_tables(folder):
    p, q = _model(8, 3, 2, 0.5)
    cases = {}
    for name, table in {"nan": np.where(np.arange(q.size).reshape(q.shape) == 4, np.nan, q),
                        "plus_inf": np.where(np.arange(q.size).reshape(q.shape) == 4, np.inf, q),
                        "rows": q[:-1], "flat": q.ravel(), "empty_row": np.vstack([q[:1] * -np.inf, q[1:]]),
                        "strings": np.array([["a", "b", "c"]] * 4), "huge": q * 1e200,
                        "objects": np.array([[1.0, None, 2.0]] * 4, dtype=object)}.items():
        path = folder / f"{name}.npy"
        np.save(path, table, allow_pickle=True)
        cases[name] = path
    np.savez(folder / "archive.npz", q=q)
    cases["npz"] = folder / "archive.npz"
    cases["missing"] = folder / "missing.npy"
    np.save(folder / "good_p.npy", p)
    return cases, folder / "good_p.npy"


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    cases, good = _bad_tables(tmp_path)
    for name, path in cases.items():
        assert main(["sequences", "--p-logits", str(good), "--q-logits", str(path)]) == 2, name
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, (name, captured.err)
        assert captured.err.startswith("kl-verify: error: "), name
    for argv in (["sequences", "no_such_estimator", "--p-logits", str(good), "--q-logits", str(good)],
                 ["sequences", "roll_full", "--p-logits", str(good), "--q-logits", str(good)],
                 ["sequences", "k1,k1", "--p-logits", str(good), "--q-logits", str(good)],
                 ["sequences", "--p-logits", str(good)]):
        assert main(argv) == 2, argv
        assert len(capsys.readouterr().err.strip().splitlines()) == 1, argv


def test_too_many_sequences_is_refused_with_the_limit(tables, capsys, monkeypatch):
    from verify.layers.gradients import sequence_models

    folder, _, _ = tables
    monkeypatch.setattr(sequence_models, "MAX_SEQUENCES", 8)
    assert main(["sequences", "--p-logits", str(folder / "p.npy"), "--q-logits", str(folder / "q.npy")]) == 2
    assert "limit of 8" in capsys.readouterr().err


# ---------------------------------------------------------------------- moments --control-variate


def test_moments_control_variate_of_a_categorical_pair(capsys):
    """lambda* = Cov(log r, r) / Var(r) and the variances, against an mpmath sum here."""
    p_logits, q_logits = [0.3, -0.2, 1.1, 0.0], [0.0, 0.4, 0.9, -0.5]
    spec = "categorical(logits=[{}])"
    code = main(["moments", "k3", "--p", spec.format(", ".join(map(str, p_logits))),
                 "--q", spec.format(", ".join(map(str, q_logits))), "--control-variate", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    validate(document)
    block = document["control_variate"]
    with mpmath.workdps(DPS):
        log_p, log_q = _log_softmax(np.array(p_logits)), _log_softmax(np.array(q_logits))
        weights = [mpmath.exp(a) for a in log_q]
        ratios = [mpmath.exp(b - a) for a, b in zip(log_q, log_p)]
        _, var_k1 = _variance(weights, [-mpmath.log(r) for r in ratios])
        _, var_r = _variance(weights, ratios)
        _, var_k3 = _variance(weights, [r - 1 - mpmath.log(r) for r in ratios])
        mean_log = mpmath.fsum(w * mpmath.log(r) for w, r in zip(weights, ratios))
        covariance = mpmath.fsum(w * mpmath.log(r) * r for w, r in zip(weights, ratios)) - mean_log
        optimal = covariance / var_r
        at_optimal = var_k1 - covariance ** 2 / var_r
    for key, exact in (("optimal_lambda", optimal), ("variance_at_optimal", at_optimal), ("variance_k1", var_k1),
                       ("variance_k3", var_k3)):
        _close(block[key], block[key + "_abs_error"], exact, key)


def test_moments_control_variate_where_q_has_mass_where_p_has_none(capsys):
    code = main(["moments", "k1", "--p", "categorical(logits=[0.0, -inf, 1.0])",
                 "--q", "categorical(logits=[0.5, 0.0, 0.2])", "--control-variate", "--json"])
    block = json.loads(capsys.readouterr().out)["control_variate"]
    assert code == 0
    assert block["optimal_lambda"] is None and block["variance_at_optimal"] == "inf"
    assert "every lambda" in block["note"]


# ---------------------------------------------------------------------- the report's data and page


def test_report_page_and_figures_from_cell_shaped_data():
    """reports/sequences.md renders from data shaped like the cell's (a tiny sweep here),
    and the cell has a fingerprint of its own (the gradient layer's code)."""
    from verify.layers.gradients.sequence_examples import SequenceSweep, model_tables
    from verify.report.sequences import GRADIENT_FIGURE, VARIANCE_FIGURE, sequences_figures, sequences_page
    from verify.run.collect import cell_description

    sweep = SequenceSweep("tiny", "V = 2 tokens, T = 2 positions", 2, 2, seed=1, spreads=(0.1, 1.0), top_k=1)
    models = []
    for spread in sweep.spreads:
        p, q = model_tables(sweep, spread)
        assert np.isinf(q).sum() == 3 and np.isfinite(p).all()   # top-1 of q in each of the 3 rows
        models.append({"spread": spread, **sequences(None, p_logits=p, q_logits=q).as_json()})
    results = {"sequence_models": {"sweeps": [{**sweep.as_json(), "models": models}], "pairs": []}}
    page = sequences_page(results)
    assert "## 1. Which gradient" in page and "## A top-k truncated q" in page and "| tiny | 0.1 |" in page
    figures = sequences_figures(results)
    assert set(figures) == {VARIANCE_FIGURE, GRADIENT_FIGURE}
    assert all(data.startswith(b"\x89PNG") for data in figures.values())
    description = cell_description("sequences", None, "ci", 10.0)
    assert "verify/layers/gradients/sequence_models.py" in description["sources"]
