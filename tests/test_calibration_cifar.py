"""Cross-checks of the CIFAR real-network study (alignnb.calibration.cifar) and its data loader: binned ECE against
netcal on the records themselves, smooth ECE against relplot and against a direct (grid-free) evaluation of its
formula, hypothesis properties, and the claims' decision logic on constructed studies."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from alignnb.calibration import binned_calibration_error, brier_score
from alignnb.calibration.cifar import (
    CIFAR_MAPS, CifarConfig, CifarSizes, CifarSplits, CifarStudy, cifar_rbs_claim, cifar_ranking_claims,
    cifar_size_claims, cifar_study, smooth_calibration_error, smooth_ece_at, split_study, calibration_estimates)
from alignnb.data import CIFAR_RECORDS, cifar_records


@pytest.fixture(scope="module")
def records():
    return {r.name: r for r in cifar_records()}


# ---------------------------------------------------------------- the loader

def test_records_load_and_validate(records, tmp_path):
    assert list(records) == list(CIFAR_RECORDS)
    for name, r in records.items():
        n_classes = CIFAR_RECORDS[name][2]
        assert r.probs.shape == (10000, n_classes) and r.labels.shape == (10000,)
        raw = np.load(f"data_samples/cifar/{name}.npz")
        np.testing.assert_array_equal(r.probs, raw["predictions"])  # unchanged from the file
        np.testing.assert_array_equal(r.labels, raw["ground_truth"])
    with pytest.raises(ValueError, match="names must be among"):
        cifar_records("resnet-50")
    with pytest.raises(FileNotFoundError):
        cifar_records(folder=tmp_path)
    (tmp_path / "cifar").mkdir()
    np.savez(tmp_path / "cifar" / "lenet-5-cifar-10.npz", predictions=np.full((3, 9), 1 / 9, np.float32),
             ground_truth=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"shape \(N, 10\)"):
        cifar_records("lenet-5-cifar-10", folder=tmp_path)


# ---------------------------------------------------------------- netcal on the real records

@pytest.mark.parametrize("bins", [5, 10, 15, 30])
def test_binned_ece_matches_netcal_on_records(records, bins):
    from netcal.metrics import ECE
    rng = np.random.default_rng(bins)
    for r in records.values():
        for idx in (np.arange(10000), rng.choice(10000, 700, replace=False)):
            p, y = r.probs[idx].astype(np.float64), r.labels[idx]
            theirs = ECE(bins=bins).measure(p, y)
            assert binned_calibration_error(p, y, n_bins=bins) == pytest.approx(theirs, abs=1e-7)


# ---------------------------------------------------------------- relplot's smECE

def _relplot_inputs(p, y):
    import relplot
    return relplot.multiclass_logits_to_confidences(p, y, probs=True)


def test_smece_matches_relplot_on_records(records):
    import relplot
    rng = np.random.default_rng(0)
    for r in records.values():
        for idx in (np.arange(10000), rng.choice(10000, 500, replace=False)):
            p, y = r.probs[idx].astype(np.float64), r.labels[idx]
            conf, outcome = _relplot_inputs(p, y)
            assert smooth_calibration_error(p, y) == pytest.approx(relplot.smECE(conf, outcome), abs=1e-6)
            for sigma in (0.004, 0.05, 0.6):
                assert smooth_ece_at(conf, outcome, sigma) == pytest.approx(
                    relplot.smECE_sigma(conf, outcome, sigma), abs=1e-6)


def _direct_smooth_ece(conf, outcome, sigma, mesh=2001):
    "(13) evaluated directly: exact reflected-Gaussian kernel sums at each point, no grid for the points."
    t = np.linspace(0, 1, mesh)[:, None]
    k = sum(np.exp(-0.5 * ((t - s[None]) / sigma) ** 2) for s in (conf, -conf, 2 - conf))  # (mesh, N)
    return np.abs(k @ (conf - outcome)).sum() / k.sum()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(50, 400), power=st.floats(0.3, 3.0),
       sigma=st.floats(0.03, 0.3))
def test_smece_against_direct_formula(seed, n, power, sigma):
    """Away from the ends (confidences in [0.05, 0.95]) the grid, the cut kernel and the undoubled end nodes change
    nothing that matters: our value equals the direct sum to the grid's resolution."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.05, 0.95, n)
    outcome = (rng.uniform(size=n) < conf ** power).astype(float)
    sigma = min(sigma, 0.15)  # the kernel is cut at +-1/2; keep its mass inside
    assert smooth_ece_at(conf, outcome, sigma) == pytest.approx(_direct_smooth_ece(conf, outcome, sigma), abs=2e-3)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(20, 300), classes=st.integers(2, 12))
def test_smece_properties(seed, n, classes):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(classes, 0.5), n)
    y = rng.integers(0, classes, n)
    value, sigma = smooth_calibration_error(p, y, return_sigma=True)
    assert 0 <= value <= 1 and 0 < sigma <= 1
    perm = rng.permutation(n)
    assert smooth_calibration_error(p[perm], y[perm]) == pytest.approx(value, abs=1e-12)  # order does not matter
    # the fixed point (14): sigma is within the search's resolution of smECE_sigma, or sigma = 1 bounds it
    conf, outcome = p.max(1), (p.argmax(1) == y).astype(float)
    assert sigma == 1.0 or abs(sigma - smooth_ece_at(conf, outcome, sigma)) < 2e-3 + abs(
        smooth_ece_at(conf, outcome, sigma) - smooth_ece_at(conf, outcome, sigma - 2 ** -10))


def test_smece_bad_inputs():
    with pytest.raises(ValueError, match="sigma must be positive"):
        smooth_ece_at(np.array([0.5]), np.array([1.0]), -0.1)
    with pytest.raises(ValueError, match="steps"):
        smooth_calibration_error(np.full((3, 2), 0.5), [0, 1, 0], steps=0)
    with pytest.raises(ValueError):
        smooth_calibration_error(np.full((3, 2), 0.7), [0, 1, 0])  # rows off the simplex


# ---------------------------------------------------------------- the study on a record

def test_split_study_gains_and_bound(records):
    r = records["wideresnet-16-4-cifar-10"]
    sp = split_study(r, CifarConfig(records=(r.name,), n_splits=2))
    assert sp.methods == ("none",) + CIFAR_MAPS
    y = sp.example["labels"]
    for i, m in enumerate(sp.methods):  # (6) and (5) recomputed from split 0's test probabilities
        gain = brier_score(sp.example["none"], y).mean - brier_score(sp.example[m], y).mean
        assert sp.estimates["brier_gain"][i, 0] == pytest.approx(gain, abs=1e-12)
        assert sp.estimates["rbs"][i, 0] == pytest.approx(math.sqrt(np.mean(((sp.example[m] - np.eye(10)[y]) ** 2).sum(1))))
    assert (sp.temperature > 1).all()  # WideResNet is overconfident (Guo et al.'s finding for modern networks)
    assert (sp.estimates["brier_gain"][1] > 0).all()  # temperature scaling lowers its Brier score on held-out images
    est = calibration_estimates(sp.example["none"], y)
    assert max(est["l2_5"], est["l2_15"], est["l2_30"], est["kde_l2"]) < est["rbs"]


def test_config_validation():
    for bad, msg in ((CifarConfig(n_splits=1), "n_splits"), (CifarConfig(records=("x",)), "records must be"),
                     (CifarConfig(sizes=(10,)), "sizes"), (CifarConfig(bin_counts=(10,)), "bin_counts"),
                     (CifarConfig(calibration_share=0.0), "calibration_share")):
        with pytest.raises(ValueError, match=msg):
            cifar_study(bad)


# ---------------------------------------------------------------- the claims' logic on constructed studies

def _splits(ece: np.ndarray, gain: np.ndarray, rbs_margin: float = 0.3) -> CifarSplits:
    "A split study whose 'none' and five maps have the given (6, S) ECEs and Brier gains."
    s = ece.shape[1]
    est = {"ece_15": ece, "brier_gain": gain, "rbs": np.full((6, s), 0.5), "l2_15": np.full((6, s), 0.5 - rbs_margin),
           "l2_debiased": np.full((6, s), 0.1), "kde_l2": np.full((6, s), 0.1)}
    return CifarSplits("wideresnet-16-4-cifar-10", "WRN", "CIFAR-10", ("none",) + CIFAR_MAPS, est,
                       np.ones((6, s), bool), np.ones(s))


def _study(splits: CifarSplits, n_splits: int) -> CifarStudy:
    return CifarStudy(CifarConfig(records=(splits.name,), n_splits=n_splits), {splits.name: splits}, {})


def test_ranking_claims_detect_a_planted_disagreement():
    rng = np.random.default_rng(0)
    s = 20
    ece = 0.05 + 0.002 * rng.standard_normal((6, s))
    gain = 0.01 + 0.0005 * rng.standard_normal((6, s))
    ece[5] -= 0.02  # isotonic: lowest ECE ...
    gain[5] -= 0.005  # ... but a smaller Brier gain than every other map
    claims = cifar_ranking_claims(_study(_splits(ece, gain), s))
    assert [c.verdict for c in claims] == ["held", "held"]
    assert "isotonic above" in claims[0].statement
    # well-separated methods on which ECE and gain agree (ECE = const - gain): one half of any pair fails
    spaced = 0.01 * np.arange(6)[:, None] + 0.0005 * rng.standard_normal((6, s))
    agree = cifar_ranking_claims(_study(_splits(0.1 - spaced, spaced), s))
    assert "not held" in {c.verdict for c in agree}


def test_rbs_claim_fails_when_an_estimate_exceeds_the_rbs():
    s = 10
    noise = 0.001 * np.random.default_rng(1).standard_normal((6, s))
    ok = cifar_rbs_claim(_study(_splits(np.zeros((6, s)), np.zeros((6, s)), rbs_margin=0.3), s))
    sp = _splits(np.zeros((6, s)), np.zeros((6, s)), rbs_margin=-0.05)
    sp.estimates["l2_15"] = sp.estimates["l2_15"] + noise
    bad = cifar_rbs_claim(_study(sp, s))
    assert ok.verdict == "not resolved" or ok.verdict == "held"  # zero spread: the interval is a point
    assert ok.estimate == pytest.approx(0.3) and bad.verdict == "not held"


def test_size_claims_threshold():
    rng = np.random.default_rng(2)
    sizes = (500, 10000)
    def sizes_study(drift):
        ece = [0.02 + drift + 0.003 * rng.standard_normal(200), np.array([0.02])]
        return CifarSizes("lenet-5-cifar-10", sizes, 1.1, {"temperature": {"ece_15": ece}})
    for drift, verdict in ((0.03, "held"), (0.0, "not held")):
        study = CifarStudy(CifarConfig(), {"lenet-5-cifar-10": _splits(np.zeros((6, 2)), np.zeros((6, 2)))},
                           {"lenet-5-cifar-10": sizes_study(drift)})
        (claim,) = cifar_size_claims(study)
        assert claim.verdict == verdict and claim.estimate == pytest.approx(drift, abs=0.002)
