"""Cross-checks of alignnb.calibration against torchmetrics, netcal, uncertainty-calibration and scikit-learn,
plus property-based fuzzing of the input validation (hypothesis)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from hypothesis.extra.numpy import arrays

from alignnb.calibration import (
    binned_calibration_error, brier_score, log_score, dawid_sebastiani_score, calibration_improvement,
    root_brier_upper_bound, kde_calibration_error, isotonic_regression, TemperatureScaling, VectorScaling,
    MatrixScaling, softmax, simulate_calibration, true_calibration_errors)


def _data(n=2000, c=10, scale=2.0, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    p = softmax(scale * rng.standard_normal((n, c))).astype(dtype)
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, c, n)
    return p, y


# ---------------------------------------------------------------- torchmetrics

@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torchmetrics(norm, seed):
    from torchmetrics.functional.classification import multiclass_calibration_error
    p, y = _data(3000, 7, seed=seed)
    theirs = float(multiclass_calibration_error(torch.from_numpy(p), torch.from_numpy(y), num_classes=7, n_bins=15, norm=norm))
    ours = binned_calibration_error(p, y, n_bins=15, norm=norm)
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_torchmetrics_confidence_one_bin():
    """Convention difference (torchmetrics issue 3510): a confidence of exactly 1.0 lands in a hidden extra bin in
    torchmetrics, while we put it in the last bin [14/15, 1]. With 100 wrong predictions at confidence 1.0 and 300
    correct ones at 0.94, torchmetrics' value is our ECE of the other rows (weighted by their share) plus the
    hidden bin's 100/1000 * |0 - 1|; ours merges both groups, so their gaps partly cancel."""
    from torchmetrics.functional.classification import multiclass_calibration_error
    s = simulate_calibration(1000, 5, 1.0, seed=2, logit_scale=3.0)  # calibrated: other bins have small gaps
    p, y = s.probs.copy(), s.labels
    p[:100] = np.eye(5)[(y[:100] + 1) % 5]  # confidence exactly 1, wrong
    p[100:400] = 0.925 * np.eye(5)[y[100:400]] + 0.015  # confidence 0.94, correct: same last bin
    theirs = float(multiclass_calibration_error(torch.from_numpy(p), torch.from_numpy(y), num_classes=5, n_bins=15))
    expected = binned_calibration_error(p[100:], y[100:], n_bins=15) * 900 / 1000 + 100 / 1000
    assert theirs == pytest.approx(expected, abs=1e-6)
    assert theirs - binned_calibration_error(p, y, n_bins=15) > 0.01


# ---------------------------------------------------------------- netcal

def test_matches_netcal_multiclass():
    from netcal.metrics import ECE
    p, y = _data(3000, 6, seed=3)
    theirs = ECE(bins=10).measure(p, y)
    assert binned_calibration_error(p, y, n_bins=10) == pytest.approx(theirs, abs=1e-9)


def test_netcal_binary_convention():
    """netcal's binary input is P(y=1) scored against y, not the top-label confidence; it equals our classwise
    value (both class columns give the same binned error by symmetry), and differs from our top-label value."""
    from netcal.metrics import ECE
    rng = np.random.default_rng(4)
    p1 = rng.uniform(0.01, 0.99, 4000)
    y = (rng.uniform(size=4000) < p1 ** 1.5).astype(np.int64)
    theirs = ECE(bins=10).measure(p1, y)
    assert binned_calibration_error(p1, y, n_bins=10, mode="classwise") == pytest.approx(theirs, abs=1e-9)
    assert abs(binned_calibration_error(p1, y, n_bins=10, mode="top") - theirs) > 1e-3


# ---------------------------------------------------------------- uncertainty-calibration (Kumar et al.)

@pytest.mark.parametrize("seed", [0, 5])
def test_matches_uncertainty_calibration_debiased(seed):
    import calibration as cal
    p, y = _data(1500, 5, seed=seed)
    theirs = cal.get_calibration_error(p, y, p=2, debias=True)  # classwise ('marginal'), 15 equal-mass bins
    ours = binned_calibration_error(p, y, n_bins=15, binning="mass", norm="l2", mode="classwise", debias=True)
    assert ours == pytest.approx(theirs, abs=1e-9)
    theirs_top = cal.lower_bound_scaling_ce(p, y, p=2, debias=True, num_bins=15, mode="top-label")
    assert binned_calibration_error(p, y, binning="mass", norm="l2", debias=True) == pytest.approx(theirs_top, abs=1e-9)


@pytest.mark.parametrize("norm,power", [("l1", 1), ("l2", 2)])
def test_matches_uncertainty_calibration_plugin(norm, power):
    import calibration as cal
    p, y = _data(1200, 4, seed=6)
    for mode, theirs_mode in (("top", "top-label"), ("classwise", "marginal")):
        theirs = cal.lower_bound_scaling_ce(p, y, p=power, debias=False, num_bins=15, mode=theirs_mode)
        assert binned_calibration_error(p, y, binning="mass", norm=norm, mode=mode) == pytest.approx(theirs, abs=1e-9)
    # equal-width bins: theirs are right-closed (b/B, (b+1)/B], ours left-closed; continuous data never hits an edge
    assert binned_calibration_error(p, y, norm="l1") == pytest.approx(cal.get_ece(p, y, num_bins=15), abs=1e-9)


# ---------------------------------------------------------------- scikit-learn

def test_scores_match_sklearn():
    from sklearn.metrics import log_loss
    p, y = _data(500, 4, seed=7)
    assert log_score(p, y).mean == pytest.approx(log_loss(y, p, labels=range(4)), rel=1e-12)
    onehot = np.eye(4)[y]
    assert brier_score(p, y).mean == pytest.approx(((p - onehot) ** 2).sum(1).mean(), rel=1e-12)
    z = torch.randn(50, 4, dtype=torch.float64); yt = torch.randint(0, 4, (50,))
    assert float(log_score(z, yt, from_logits=True).mean) == pytest.approx(
        float(torch.nn.functional.cross_entropy(z, yt)), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 1)), min_size=1, max_size=60))
def test_isotonic_matches_sklearn(pairs):
    from sklearn.isotonic import IsotonicRegression
    x = np.array([a / 20 for a, _ in pairs]); t = np.array([b for _, b in pairs])
    ux, fx = isotonic_regression(x, t)
    ref = IsotonicRegression(out_of_bounds="clip").fit(x, t).predict(x)
    np.testing.assert_allclose(np.interp(x, ux, fx), ref, atol=1e-9)


def test_temperature_matches_scipy():
    from scipy.optimize import minimize_scalar
    s = simulate_calibration(3000, 8, 2.0, seed=11)
    T = TemperatureScaling().fit(s.logits, s.labels).temperature
    nll = lambda t: log_score(s.logits / t, s.labels, from_logits=True).mean
    ref = minimize_scalar(nll, bounds=(0.05, 20), method="bounded", options=dict(xatol=1e-8)).x
    assert T == pytest.approx(ref, rel=1e-4)
    assert 1.7 < T < 2.3  # the simulation's true temperature is 2


def test_vector_matrix_scaling_injective_flags():
    s = simulate_calibration(2000, 5, 1.5, seed=12)
    vs, ms = VectorScaling().fit(s.logits, s.labels), MatrixScaling().fit(s.logits, s.labels)
    assert vs.injective == bool((vs.weight.numpy() > 0).all() or (vs.weight.numpy() < 0).all())
    v = np.linalg.solve(ms.weight.numpy(), np.ones(5))
    assert ms.injective == bool((v > 0).all() or (v < 0).all())


# ---------------------------------------------------------------- the paper's identities

def test_score_difference_is_unbiased_on_simulation():
    """(6): the mean Brier difference of a temperature change equals the true change of CE_2^2."""
    m, T = 2.0, 1.6
    tr, trT = true_calibration_errors(6, m, n_samples=400_000), true_calibration_errors(6, m, T, n_samples=400_000)
    s = simulate_calibration(200_000, 6, m, seed=21)
    imp = calibration_improvement(s.probs, softmax(s.logits / T), s.labels, n_bootstrap=200)
    assert abs(imp.estimate - (tr.brier - trT.brier)) < 4 * imp.std_error
    assert imp.ci_low < tr.brier - trT.brier < imp.ci_high


def test_root_brier_score_is_the_decomposed_bound():
    """(2) and (5): the squared RBS estimates CE_2^2 plus the refinement, to within its standard error, so the RBS
    exceeds CE_2 by what the refinement sets (checked where it is small, so a wrong Brier score would show)."""
    tr = true_calibration_errors(6, 0.2, n_samples=400_000, logit_scale=20.0)  # sharp and underconfident
    s = simulate_calibration(200_000, 6, 0.2, seed=22, logit_scale=20.0)
    per = brier_score(s.probs, s.labels).per_sample
    se = per.std(ddof=1) / np.sqrt(len(per))
    assert abs(root_brier_upper_bound(s.probs, s.labels) ** 2 - (tr.brier + tr.refinement)) < 4 * se
    assert 0 < tr.refinement < tr.brier  # tight here: the RBS is below sqrt(2) CE_2


def test_dawid_sebastiani_is_proper():
    """The expected DSS under N(m, tau^2) is minimised at mu = m, sigma^2 = tau^2."""
    y = np.random.default_rng(0).normal(1.0, 2.0, 200_000)
    best = dawid_sebastiani_score(np.full_like(y, 1.0), np.full_like(y, 4.0), y).mean
    for mu, var in ((1.3, 4.0), (1.0, 3.0), (1.0, 5.5)):
        assert dawid_sebastiani_score(np.full_like(y, mu), np.full_like(y, var), y).mean > best


# ---------------------------------------------------------------- fuzzing and bad input

prob_rows = st.integers(1, 40).flatmap(lambda n: st.integers(2, 6).flatmap(lambda c: st.tuples(
    arrays(np.float64, (n, c), elements=st.floats(0, 1)), arrays(np.int64, n, elements=st.integers(0, c - 1)))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prob_rows, st.sampled_from(["l1", "l2", "max", "kl"]), st.sampled_from(["width", "mass"]),
       st.sampled_from(["top", "classwise"]), st.integers(1, 20))
def test_estimates_finite_and_bounded(data, norm, binning, mode, n_bins):
    raw, y = data
    raw = raw + 1e-3
    p = raw / raw.sum(1, keepdims=True)
    v = binned_calibration_error(p, y, n_bins=n_bins, norm=norm, binning=binning, mode=mode)
    assert np.isfinite(v) and v >= 0
    if norm != "kl": assert v <= 1 + 1e-12
    if norm == "l2": assert np.isfinite(binned_calibration_error(p, y, n_bins, binning, "l2", mode, debias=True))
    assert np.isfinite(kde_calibration_error(p, y, mode=mode))


@settings(max_examples=40, deadline=None)
@given(prob_rows, st.sampled_from(["sum", "negative", "nan", "label_high", "label_low", "length"]))
def test_bad_input_raises(data, kind):
    raw, y = data
    p = (raw + 1e-3) / (raw + 1e-3).sum(1, keepdims=True)
    match = {"sum": "sum to 1", "negative": "negative", "nan": "NaN", "label_high": "labels must lie",
             "label_low": "labels must lie", "length": "length"}[kind]
    if kind == "sum": p = p.copy(); p[0] *= 1.5
    elif kind == "negative": p = p.copy(); p[0, 0] = -0.2; p[0, 1] += 0.2
    elif kind == "nan": p = p.copy(); p[0, 0] = np.nan
    elif kind == "label_high": y = y.copy(); y[0] = p.shape[1]
    elif kind == "label_low": y = y.copy(); y[0] = -1
    elif kind == "length": y = np.append(y, 0)
    for fn in (binned_calibration_error, brier_score, log_score, root_brier_upper_bound, kde_calibration_error):
        with pytest.raises(ValueError, match=match):
            fn(p, y)
    with pytest.raises(ValueError, match=match):
        calibration_improvement(p, p, y)


def test_bad_arguments():
    p, y = _data(20, 3)
    with pytest.raises(TypeError, match="labels must be integers"): binned_calibration_error(p, y.astype(float))
    with pytest.raises(ValueError, match="shape"): binned_calibration_error(p[None], y)
    with pytest.raises(ValueError, match="binning"): binned_calibration_error(p, y, binning="quantile")
    with pytest.raises(ValueError, match="variance must be positive"): dawid_sebastiani_score([0.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="logits"): TemperatureScaling().fit(np.zeros(5), np.zeros(5, dtype=int))
