"""The scripted study's claims, fed with synthetic records whose verdicts are known, and its interval checked
against scipy's exact binomial interval."""
import numpy as np
import pytest
from scipy.stats import binomtest

from alignnb.cal.experiments import ARMS, ItemRecord, Study, StudyConfig, exact_interval, study_claims


def _records(rng, n_conv, inapt_rate, stored_share, actions, accuracy, gold_inapt):
    out = []
    for c in range(n_conv):
        for t in range(6):
            attempts = int(rng.random() < inapt_rate)
            out.append(ItemRecord(f"c{c}-t{t}", f"c{c}", "question", "question" if rng.random() < accuracy else "request",
                                  actions, attempts, int(attempts and rng.random() < stored_share),
                                  bool(rng.random() < gold_inapt)))
    return out


def _study(cal_stored=0.0, cal_actions=1, sheet_actions=3, cal_gold_inapt=0.02, guided_accuracy=1.0, n_conv=800):
    rng = np.random.default_rng(0)
    recs = {"spreadsheet": [_records(rng, n_conv, 0.15, 1.0, sheet_actions, 0.85, 0.12)],
            "cal_keys": [_records(rng, n_conv, 0.15, cal_stored, cal_actions, 0.93, cal_gold_inapt)],
            "cal_guided": [_records(rng, n_conv, 0.0, 0.0, 5, guided_accuracy, 0.0)],
            "cal_guided_noisy": [_records(rng, n_conv, 0.0, 0.0, 5, 0.9, 0.02)]}
    return Study(StudyConfig(n_conversations=n_conv, n_annotators=1), recs, {a: 0.01 for a in ARMS})


def verdicts(study): return {c.name: c.verdict for c in study_claims(study)}


def test_a_working_cal_holds_everything():
    assert set(verdicts(_study()).values()) == {"held"}


def test_a_leaking_filter_is_not_held():
    v = verdicts(_study(cal_stored=0.2))
    assert v["cal_refuses_inapt"] == "not held"


def test_costlier_cal_and_wrong_guidance_are_not_held():
    v = verdicts(_study(cal_actions=4, cal_gold_inapt=0.3, guided_accuracy=0.8))
    assert v["no_more_actions"] == v["fewer_inapt_labels"] == v["guided_correct"] == "not held"


def test_small_runs_are_not_resolved():
    v = verdicts(_study(n_conv=8))  # about 7 inapt choices: 7/7 refused cannot show a rate above 0.99
    assert v["cal_refuses_inapt"] == "not resolved"


@pytest.mark.parametrize("k, n", [(0, 1), (0, 30), (12, 40), (89, 89), (1132, 1132), (999, 1000)])
def test_exact_interval_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert exact_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    with pytest.raises(ValueError): exact_interval(n + 1, n)
