"""The calibration reproduction's claims, driven with synthetic per-test-set estimates whose verdict is known, and
the interval behind the bias claims checked for coverage."""
import numpy as np
import pytest

from alignnb.calibration.experiments import (
    DigitsRow, DigitsStudy, RegressionStudy, _max_relative_bias, ece_bias_claims, improvement_claims,
    rbs_bound_claim, real_data_claims)
from alignnb.calibration.simulation import (
    Estimators, SharpBoundArm, SimulationArm, SimulationConfig, SimulationStudy, TrueCalibrationErrors,
    simulation_study)

SIZES = (100, 1000, 10000)


def _arm(rng, m, reps=400, sd=0.002, ece=(0.1, 0.03, 0.01), truth_d=0.05, d_bias=0.0, d_ece_bias=0.0):
    "An arm whose estimates at each size are N(mean, sd) over `reps` test sets."
    draw = lambda means: [rng.normal(mu, sd, reps) for mu in means]
    est = Estimators(ece=draw(ece), ece_debiased_l2=draw(ece), kde=draw(ece), rbs=draw((0.8,) * 3),
                     d_brier=draw((truth_d * (1 + d_bias),) * 3), d_log=draw((truth_d * (1 + d_bias),) * 3),
                     d_ece=draw((truth_d * (1 + d_ece_bias),) * 3))
    truth = Estimators(ece=0.0, ece_debiased_l2=0.0, kde=0.0, rbs=0.0, d_brier=truth_d, d_log=truth_d,
                       d_ece=truth_d)
    return SimulationArm(m, 1.0, truth, est)


def _sharp(rng, share_above, reps=2000, ce2=0.4):
    "A sharp arm whose smallest test sets have their RBS above CE_2 in a given share."
    above = np.arange(reps) < round(share_above * reps)  # exactly that share
    rbs = np.where(above, ce2 + 0.01, ce2 - 0.01)
    truth = TrueCalibrationErrors(brier=ce2**2, ce2=ce2, log=0.1, top_l1=0.0, top_l2=0.0, refinement=0.05,
                                  mc_se_brier=0.0)
    return SharpBoundArm(30.0, 0.1, truth, [rbs, rbs + 0.02, rbs + 0.03])


def _study(seed=0, share_above=0.999, sharp_reps=2000, **arm_kwargs):
    rng = np.random.default_rng(seed)
    cfg = SimulationConfig(sizes=SIZES, points_per_size=0, min_repetitions=1, n_truth=0)
    arms = {1.0: _arm(rng, 1.0, **arm_kwargs), 1.5: _arm(rng, 1.5, **arm_kwargs), 2.5: _arm(rng, 2.5, **arm_kwargs)}
    return SimulationStudy(cfg, arms, _sharp(rng, share_above, sharp_reps))


def _verdicts(claims):
    return {c.name: c.verdict for c in claims}


# ---------------------------------------------------------------- ECE bias and size dependence

def test_ece_bias_claims_held_when_biased():
    v = _verdicts(ece_bias_claims(_study()))
    assert v == {"ece_bias_calibrated": "held", "kde_bias_calibrated": "held",
                 "ece_debiased_l2_bias_calibrated": "held", "ece_size_dependence": "held"}


def test_ece_bias_claims_not_held_for_an_unbiased_estimator():
    v = _verdicts(ece_bias_claims(_study(ece=(0.0, 0.0, 0.0))))
    assert set(v.values()) == {"not held"}


def test_ece_bias_claims_not_resolved_when_noisy():
    # mean 0.01 at n = 1000 is the threshold itself; a wide spread over few test sets cannot decide it
    v = _verdicts(ece_bias_claims(_study(ece=(0.011, 0.011, 0.010), sd=0.05, reps=30)))
    assert v["ece_bias_calibrated"] == "not resolved" and v["ece_size_dependence"] == "not resolved"


def test_ece_bias_decided_at_size_1000():
    # a bias only at n = 100 must not make the n = 1000 claim hold
    v = _verdicts(ece_bias_claims(_study(ece=(0.2, 0.0, 0.0))))
    assert v["ece_bias_calibrated"] == "not held" and v["ece_size_dependence"] == "held"


# ---------------------------------------------------------------- score difference against ECE difference

def test_improvement_claims_unbiased_scores_biased_ece():
    v = _verdicts(improvement_claims(_study(d_ece_bias=-0.3)))
    assert v == {"score_difference_unbiased": "held", "ece_difference_biased": "held"}


def test_improvement_claims_catch_a_biased_score_difference():
    v = _verdicts(improvement_claims(_study(d_bias=0.12, d_ece_bias=0.0)))
    assert v == {"score_difference_unbiased": "not held", "ece_difference_biased": "not held"}


def test_improvement_claims_not_resolved_with_few_test_sets():
    v = _verdicts(improvement_claims(_study(sd=0.02, reps=30, d_ece_bias=0.05)))
    assert v == {"score_difference_unbiased": "not resolved", "ece_difference_biased": "not resolved"}


def test_max_relative_bias_interval_covers_zero_bias():
    """Unbiased cells: the interval must contain the true largest bias, 0, in at least 95% of runs (a percentile
    bootstrap of the max of |mean - truth| misses it almost always, since the max of |noise| is positive)."""
    rng = np.random.default_rng(1)
    misses = 0
    for _ in range(200):
        cells = [(rng.normal(0.05, 0.02, 50), 0.05) for _ in range(20)]
        est, low, high = _max_relative_bias(cells)
        assert low <= est <= high
        misses += low > 0
    assert misses <= 10


def test_max_relative_bias_detects_one_biased_cell():
    rng = np.random.default_rng(2)
    cells = [(rng.normal(0.05, 0.001, 400), 0.05) for _ in range(19)] + [(rng.normal(0.06, 0.001, 400), 0.05)]
    est, low, high = _max_relative_bias(cells)
    assert est == pytest.approx(0.2, abs=0.01) and low > 0.15 and high < 0.25


# ---------------------------------------------------------------- the RBS bound where it is tight

@pytest.mark.parametrize("share,reps,verdict", [(0.999, 2000, "held"), (0.8, 2000, "not held"),
                                                (0.96, 100, "not resolved")])
def test_rbs_bound_claim(share, reps, verdict):
    c = rbs_bound_claim(_study(share_above=share, sharp_reps=reps))
    assert c.verdict == verdict
    assert c.low <= c.estimate <= c.high


# ---------------------------------------------------------------- real data

def _digits(ci_lr, ci_mlp):
    rows = [DigitsRow("logistic (overfit)", "temperature", True, sum(ci_lr) / 2, ci_lr, 0.1, 0.02, 3.0),
            DigitsRow("logistic (overfit)", "vector", True, -1.0, (-2.0, -0.5), 0.1, 0.02),
            DigitsRow("MLP", "temperature", True, sum(ci_mlp) / 2, ci_mlp, 0.1, 0.02, 0.7)]
    return DigitsStudy(rows, {}, np.zeros(997, dtype=int))


def test_real_data_claims():
    reg = RegressionStudy(scale=4.0, reduction=1.0, std_error=0.5, ci=(-0.1, 2.0), dss_before=2.0, dss_after=1.0,
                          n_test=121)
    v = _verdicts(real_data_claims(_digits((0.004, 0.02), (-0.03, -0.01)), reg))
    assert v == {"digits_ts_brier_reduction_logistic": "held", "digits_ts_brier_reduction_mlp": "not held",
                 "diabetes_dss_reduction": "not resolved"}


# ---------------------------------------------------------------- a real, small simulation

def test_small_simulation_decides_the_large_effects():
    cfg = SimulationConfig(sizes=(100, 1000, 3000), points_per_size=20_000, min_repetitions=20, n_truth=100_000)
    study = simulation_study(cfg)
    assert [len(e) for e in study.arms[1.0].estimates.ece] == [200, 20, 20]
    v = _verdicts(ece_bias_claims(study) + improvement_claims(study) + [rbs_bound_claim(study)])
    assert v["ece_bias_calibrated"] == "held" and v["ece_size_dependence"] == "held"
    assert v["ece_difference_biased"] == "held" and v["score_difference_unbiased"] != "not held"
    assert v["rbs_bounds_ce2"] != "not held"
