"""Issue 14, calibration part: the binary convention of the ecosystem (against torchmetrics and netcal), a
consistent estimator of the log-score calibration error (against a Monte Carlo truth with a known calibration
map), named errors at every public boundary (regressions and a hypothesis property test), and the page's
"Using it" recipe run in isolation."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import alignnb.calibration as calib
from alignnb.calibration import (
    TemperatureScaling, VectorScaling, binned_calibration_error, brier_score, calibration_improvement,
    check_probs, cross_fitted_calibration_error, kde_calibration_error, log_score, simulate_calibration, softmax,
    true_calibration_errors)

ROOT = Path(__file__).resolve().parents[1]


def _binary(n, seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.999, n)  # continuous: no point on a bin edge, none at exactly 1.0 (torchmetrics #3510)
    y = (rng.uniform(size=n) < p ** 1.7).astype(np.int64)  # miscalibrated on purpose
    return p, y


# ---------------------------------------------------------------- 1. the binary convention

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [10, 15])
def test_binary_vector_matches_torchmetrics(seed, norm, n_bins):
    from torchmetrics.functional.classification import binary_calibration_error
    p, y = _binary(3000, seed)
    theirs = float(binary_calibration_error(torch.from_numpy(p), torch.from_numpy(y), n_bins=n_bins, norm=norm))
    assert binned_calibration_error(p, y, n_bins=n_bins, norm=norm) == pytest.approx(theirs, abs=1e-6)
    assert binned_calibration_error(torch.from_numpy(p), torch.from_numpy(y), n_bins=n_bins, norm=norm) == \
        pytest.approx(theirs, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_binary_vector_matches_netcal(seed):
    from netcal.metrics import ECE
    p, y = _binary(4000, seed)
    theirs = ECE(bins=10).measure(p, y)
    assert binned_calibration_error(p, y, n_bins=10) == pytest.approx(theirs, abs=1e-9)
    # the same problem given as (N, 2) columns, asked for explicitly
    assert binned_calibration_error(np.stack([1 - p, p], 1), y, n_bins=10, mode="binary") == \
        pytest.approx(theirs, abs=1e-9)


def test_binary_logits_match_torchmetrics_sigmoid():
    """torchmetrics applies a sigmoid to binary preds outside [0, 1]; from_logits=True does the same."""
    from torchmetrics.functional.classification import binary_calibration_error
    rng = np.random.default_rng(7)
    z = 3 * rng.standard_normal(2000)
    y = (rng.uniform(size=2000) < 1 / (1 + np.exp(-z / 2))).astype(np.int64)
    theirs = float(binary_calibration_error(torch.from_numpy(z), torch.from_numpy(y)))
    assert binned_calibration_error(z, y, from_logits=True) == pytest.approx(theirs, abs=1e-6)


def test_top_label_form_is_explicit_and_matches_torchmetrics_multiclass():
    """mode='top' on a binary vector is the two-class top-label error (max(p, 1-p) against correctness)."""
    from torchmetrics.functional.classification import multiclass_calibration_error
    p, y = _binary(3000, 11)
    two = np.stack([1 - p, p], 1)
    theirs = float(multiclass_calibration_error(torch.from_numpy(two), torch.from_numpy(y), num_classes=2, n_bins=15))
    assert binned_calibration_error(p, y, mode="top") == pytest.approx(theirs, abs=1e-6)
    assert abs(binned_calibration_error(p, y) - theirs) > 1e-3  # the default is the other convention


def test_binary_kde_is_the_positive_class_problem():
    """kde_calibration_error on (N,) regresses Y on P(Y=1): checked against a brute-force leave-one-out sum."""
    p, y = _binary(500, 3)
    h = 0.05
    K = np.exp(-0.5 * ((p[:, None] - p[None]) / h) ** 2)
    np.fill_diagonal(K, 0)
    ref = np.mean(np.abs(p - K @ y / K.sum(1)))
    assert kde_calibration_error(p, y, bandwidth=h, grid=8192) == pytest.approx(ref, abs=2e-3)


# ---------------------------------------------------------------- 2. the log-score calibration error

@pytest.fixture(scope="module")
def bad_model():
    return simulate_calibration(100_000, 10, 2.5, seed=21), true_calibration_errors(10, 2.5, n_samples=300_000)


def test_cross_fitted_log_ce_is_consistent(bad_model):
    """The issue's case: n = 1e5, miscalibration 2.5, true E KL(Q || P) = 0.537."""
    s, truth = bad_model
    assert truth.log == pytest.approx(0.537, abs=0.005)
    est = cross_fitted_calibration_error(s.logits, s.labels)
    assert abs(est.estimate - truth.log) < 4 * est.std_error + 0.003
    assert est.std_error < 0.01
    # norm='kl' measures the binned binary top-label / classwise KL, a lower bound, far below the truth
    top = binned_calibration_error(s.probs, s.labels, norm="kl")
    classwise = binned_calibration_error(s.probs, s.labels, norm="kl", mode="classwise")
    assert top < 0.7 * truth.log and classwise < 0.3 * truth.log


def test_cross_fitted_brier_ce_matches_truth(bad_model):
    s, truth = bad_model
    est = cross_fitted_calibration_error(s.logits, s.labels, score="brier")
    assert abs(est.estimate - truth.brier) < 4 * est.std_error + 0.002


def test_cross_fitted_is_near_zero_when_calibrated():
    s = simulate_calibration(20_000, 10, 1.0, seed=5)
    est = cross_fitted_calibration_error(s.logits, s.labels)
    assert abs(est.estimate) < 4 * est.std_error + 1e-3


def test_a_family_without_the_calibration_map_gives_a_lower_bound():
    """P = softmax(2.5 z + b) with Q = softmax(z): temperature alone cannot undo the shift b, vector scaling can.
    The truth is E KL(Q || P) computed from the known Q."""
    rng = np.random.default_rng(8)
    n, C = 40_000, 5
    b = np.array([2.0, -1.0, 0.0, 1.0, -2.0])
    z = 2.0 * rng.standard_normal((n, C))
    Q = softmax(z)
    y = np.minimum((Q.cumsum(1) < rng.random((n, 1))).sum(1), C - 1)
    logits = 2.5 * z + b
    P = softmax(logits)
    truth = float((Q * (np.log(Q) - np.log(P))).sum(1).mean())
    ts = cross_fitted_calibration_error(logits, y)
    vs = cross_fitted_calibration_error(logits, y, recalibrator=VectorScaling())
    assert ts.estimate < truth - 10 * ts.std_error  # misspecified: a strict lower bound
    assert abs(vs.estimate - truth) < 4 * vs.std_error + 0.005  # the family holds Q: consistent


# ---------------------------------------------------------------- 3. named errors (regressions)

def test_softmax_on_torch_keeps_torch_and_gradients():
    z = torch.tensor([[1.0, -2.0, 0.5], [3.0, 3.0, 0.0]], requires_grad=True)
    p = softmax(z)
    assert isinstance(p, torch.Tensor)
    torch.testing.assert_close(p, torch.softmax(z, -1))
    p[:, 0].sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    np.testing.assert_allclose(softmax(torch.tensor([[0, 1]])).numpy(), softmax(np.array([[0.0, 1.0]])))


@pytest.mark.parametrize("bad,match", [
    (np.array([[0.0, np.nan]]), "logits must be finite"), (torch.tensor([[np.inf, 0.0]]), "logits must be finite"),
    (np.zeros((2, 3, 4)), r"logits must have shape \(N, C\), got \(2, 3, 4\)"),
    (torch.zeros(2, 3, 4), r"logits must have shape \(N, C\), got \(2, 3, 4\)"),
    (np.zeros(3), r"logits must have shape \(N, C\)"), ("abc", "logits must be"), (None, "logits must be"),
    (np.array([["a", "b"]]), "logits must be real"), (torch.tensor([[True, False]]), "logits must be real")])
def test_softmax_rejects_by_name(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        softmax(bad)


def test_probability_above_one_is_not_called_negative():
    for bad in (np.array([1.5, 0.2]), np.array([[1.5, 0.5], [0.5, 0.5]])):
        with pytest.raises(ValueError) as e:
            check_probs(bad, [0, 1])
        assert "negative" not in str(e.value) and "1.5" in str(e.value)


def test_count_arguments_are_named():
    p, y = softmax(np.random.default_rng(0).normal(size=(50, 3))), np.arange(50) % 3
    for kw in ({"n_bootstrap": 0}, {"n_bootstrap": -3}, {"n_bootstrap": 2.5}):
        with pytest.raises(ValueError, match="n_bootstrap"):
            calibration_improvement(p, p, y, **kw)
    for grid in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="grid"):
            kde_calibration_error(p, y, grid=grid)
    assert np.isfinite(calibration_improvement(p, p, y, n_bootstrap=1).estimate)
    assert np.isfinite(kde_calibration_error(p, y, grid=2))


def test_log_improvement_of_zero_probabilities_is_an_error_not_nan():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(ValueError, match="probability 0"):
        calibration_improvement(p, p, [1, 0, 1], score="log")


# ---------------------------------------------------------------- 5. a property test over the public API

_ARG_NAMES = ("probs", "probs_before", "probs_after", "labels", "logits", "X", "y", "mean", "variance", "targets", "input_probs",
              "true_class_probs", "predictions", "x", "n_bins", "grid", "bandwidth", "n_bootstrap", "chunk", "mode",
              "n_folds", "recalibrator", "score", "norm", "binning", "confidence", "n", "n_classes")


def _bad_matrix(kind, n, c, rng):
    base = softmax(rng.normal(size=(n, c)))
    if kind == "valid": return base
    if kind == "nan": base[0, 0] = np.nan; return base
    if kind == "inf": base[0, 0] = np.inf; return base
    if kind == "huge": return np.full((n, c), 1e300)
    if kind == "tiny": return np.full((n, c), 1e-300)
    if kind == "empty": return np.zeros((0, c))
    if kind == "3d": return base[None]
    if kind == "scalar": return np.float64(0.5)
    if kind == "strings": return np.full((n, c), "a")
    if kind == "bool": return base > 0.3
    if kind == "complex": return base.astype(complex)
    if kind == "object": return base.astype(object)
    if kind == "torch": return torch.from_numpy(base)
    if kind == "torch_int": return torch.ones(n, c, dtype=torch.int64)
    if kind == "list": return base.tolist()
    if kind == "binary": return base[:, 0]
    if kind == "binary_high": return np.full(n, 1.5)
    return {"none": None, "str": "probs", "dict": {"a": 1}, "set": {1, 2}}[kind]


def _bad_labels(kind, n, c, rng):
    y = rng.integers(0, c, n)
    return {"valid": y, "short": y[:-1], "long": np.append(y, 0), "float": y.astype(float), "high": y + c,
            "negative": y - c, "2d": y[:, None], "none": None, "str": "abc", "torch": torch.from_numpy(y),
            "bool": y > 0, "list": y.tolist()}[kind]


def _uniform(P):
    "Equal input weights (M,) for a decomposition of M rows, whatever P is (the function validates it)."
    m = len(P) if isinstance(P, (np.ndarray, torch.Tensor, list)) and np.ndim(P) >= 1 else 1
    return np.full(m, 1 / max(m, 1))


def _close_after(ax):
    import matplotlib.pyplot as plt
    plt.close(ax.figure)
    return ax.patches[0].get_height()


def _calls():
    return {
        "softmax": lambda P, y: softmax(P),
        "check_probs": lambda P, y: check_probs(P, y)[0],
        "brier_score": lambda P, y: brier_score(P, y).per_sample,
        "log_score_logits": lambda P, y: log_score(P, y, from_logits=True).per_sample,
        "binned_top": lambda P, y: binned_calibration_error(P, y),
        "binned_classwise_mass_l2": lambda P, y: binned_calibration_error(P, y, 7, "mass", "l2", "classwise", True),
        "binned_kl": lambda P, y: binned_calibration_error(P, y, norm="kl"),
        "kde": lambda P, y: kde_calibration_error(P, y, grid=64),
        "root_brier": lambda P, y: calib.root_brier_upper_bound(P, y),
        "improvement": lambda P, y: calibration_improvement(P, P, y, n_bootstrap=20).estimate,
        "dawid_sebastiani": lambda P, y: calib.dawid_sebastiani_score(P, P, P).per_sample,
        "reliability_bins": lambda P, y: calib.bin_sums(*check_probs(P, y), 5)[0],
        "isotonic": lambda P, y: calib.isotonic_regression(P, y)[1],
        "decomposition": lambda P, y: calib.score_decomposition(_uniform(P), P, P).calibration,
        "temperature": lambda P, y: TemperatureScaling().fit(P, y).predict_proba(P),
        "vector": lambda P, y: VectorScaling().fit(P, y).predict_proba(P),
        "isotonic_map": lambda P, y: calib.IsotonicCalibration().fit(P, y).predict(P),
        "ensemble": lambda P, y: calib.EnsembleTemperatureScaling().fit(P, y).predict_proba(P),
        "unfitted": lambda P, y: calib.MatrixScaling().predict_proba(P),
        "reliability": lambda P, y: _close_after(calib.reliability_diagram(P, y, n_bins=4)),
        "cross_fitted": lambda P, y: cross_fitted_calibration_error(P, y, n_folds=2).estimate,
    }


def _as_array(out):
    if isinstance(out, torch.Tensor): return out.detach().numpy()
    return np.asarray(out, dtype=np.float64)


_KINDS_P = ["valid", "nan", "inf", "huge", "tiny", "empty", "3d", "scalar", "strings", "bool", "complex", "object",
            "torch", "torch_int", "list", "binary", "binary_high", "none", "str", "dict", "set"]
_KINDS_Y = ["valid", "short", "long", "float", "high", "negative", "2d", "none", "str", "torch", "bool", "list"]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_calls())), st.sampled_from(_KINDS_P), st.sampled_from(_KINDS_Y),
       st.integers(1, 12), st.integers(2, 4), st.integers(0, 2**16))
def test_public_api_returns_finite_or_names_the_problem(fn, kind_p, kind_y, n, c, seed):
    rng = np.random.default_rng(seed)
    P, y = _bad_matrix(kind_p, n, c, rng), _bad_labels(kind_y, n, c, rng)
    try:
        out = _calls()[fn](P, y)
    except (ValueError, TypeError) as e:  # sklearn's NotFittedError is a ValueError
        msg = str(e)
        assert any(re.search(rf"\b{re.escape(a)}\b", msg) for a in _ARG_NAMES), f"{fn}: unnamed error {msg!r}"
        assert not isinstance(e, (IndexError, KeyError, ZeroDivisionError))
        return
    a = _as_array(out)
    assert np.isfinite(a).all(), f"{fn}({kind_p}, {kind_y}) returned non-finite {a}"


# ---------------------------------------------------------------- the "Using it" recipe

def _recipe() -> str:
    """The page's recipe: the code cells under '## Using it' if it has any, else the ```python block in its text."""
    nb = json.loads((ROOT / "nbs/40_calibration/09_experiments.ipynb").read_text())
    cells = [("".join(c["source"]), c["cell_type"]) for c in nb["cells"]]
    start = next(i for i, (src, kind) in enumerate(cells) if kind == "markdown" and src.lstrip().startswith("## Using it"))
    section = []
    for src, kind in cells[start + 1:]:
        if kind == "markdown" and src.lstrip().startswith(("# ", "## ")): break
        section.append((src, kind))
    code = ["\n".join(l for l in src.splitlines() if not l.startswith("#|")) for src, kind in section
            if kind == "code" and not src.startswith("#| hide")]
    if code: return "\n".join(code)
    return re.search(r"```python\n(.*?)```", cells[start][0], re.S).group(1)


def _user_data():
    val, test = simulate_calibration(1500, 10, 2.5, seed=1), simulate_calibration(1500, 10, 2.5, seed=2)
    return {"val_logits": torch.from_numpy(val.logits).float(), "val_labels": torch.from_numpy(val.labels),
            "test_logits": torch.from_numpy(test.logits).float(), "test_labels": torch.from_numpy(test.labels)}


def test_using_it_recipe_runs_on_torch_tensors():
    """The recipe says numpy or torch; with torch logits (what a Hugging Face model returns) it runs as written."""
    import matplotlib
    matplotlib.use("Agg")
    ns = _user_data()
    exec("from alignnb.calibration import *", ns)
    exec(_recipe(), ns)
    assert ns["ts"].temperature_ == pytest.approx(2.5, rel=0.15)
    assert isinstance(ns["p_before"], torch.Tensor)


def test_using_it_recipe_runs_with_only_its_own_imports():
    import matplotlib
    matplotlib.use("Agg")
    ns = _user_data()
    exec(_recipe(), ns)


def test_integer_torch_logits_give_the_log_score_of_their_float_values():
    "Integer logits in a torch tensor (no integer log-softmax in torch) score as the same values in float64 (found by the fuzz test)."
    from alignnb.calibration import log_score
    z, y = torch.tensor([[1, 1], [3, -2]]), np.array([0, 1])
    ours = log_score(z, y, from_logits=True).per_sample
    by_hand = np.log(np.exp(z.numpy().astype(float)).sum(1)) - z.numpy()[np.arange(2), y]
    assert np.allclose(ours.numpy(), by_hand, atol=1e-12)
