"The claim logic of alignnb.active_ner.experiments on hand-made learning curves (no training)."
import math

import numpy as np

import pytest

from alignnb.active_ner.experiments import (ExperimentConfig, LearningCurves, curve_gap, curve_table, dev_split,
                                            experiment_data, incremental_claims, reference_f1, share_claim,
                                            share_to_target, speed_claim, strategy_claims)
from alignnb.active_ner.loop import ActiveLearningRun, RoundLog
from alignnb.data import data_samples_dir, read_conll


def _run(f1s, step=0.02, seconds=1.0):
    log = [RoundLog(r, 10 * (r + 1), 100 * (r + 1), step * (r + 1), f, f, seconds, 0.0) for r, f in enumerate(f1s)]
    return ActiveLearningRun(None, log, [], None, None)


def _curves(curves_by_strategy, full=0.9, seeds=(0, 1, 2)):
    cfg = ExperimentConfig(seeds=seeds, strategies=tuple(curves_by_strategy))
    runs = {(s, seed): _run(f[k]) for s, f in curves_by_strategy.items() for k, seed in enumerate(seeds)}
    return LearningCurves(cfg, runs, {s: full for s in seeds}, {s: full for s in seeds}, {s: 1.0 for s in seeds})


def test_share_to_target_is_the_first_round_at_99_percent():
    up = [0.5, 0.8, 0.89, 0.895, 0.9]  # 0.99 * 0.9 = 0.891: first reached at round 3 (share 0.08)
    c = _curves({"mnlp": [up, up, up], "random": [up, up, up]})
    shares, censored = share_to_target(c)
    assert not censored and np.allclose(shares, 0.08)
    claim = share_claim(c, threshold=0.30)
    assert claim.verdict == "held" and math.isclose(claim.estimate, 0.08)


def test_a_run_that_stops_before_the_threshold_decides_nothing():
    never = [0.5, 0.6, 0.7]
    c = _curves({"mnlp": [never] * 3, "random": [never] * 3})
    assert share_to_target(c)[1]
    assert share_claim(c, threshold=0.30).verdict == "not resolved"


def test_never_reaching_the_target_past_the_threshold_is_not_held():
    never = [0.5] * 20  # 20 rounds of 2%: up to 40% of the tokens, never at 99%
    c = _curves({"mnlp": [never] * 3, "random": [never] * 3})
    assert share_claim(c, threshold=0.30).verdict == "not held"


def test_strategy_gaps_are_paired_by_seed_and_exclude_the_seed_round():
    a = [[0.1, 0.6, 0.7], [0.2, 0.5, 0.8], [0.3, 0.7, 0.9]]
    b = [[0.1, 0.5, 0.6], [0.9, 0.4, 0.7], [0.3, 0.6, 0.8]]  # a seed-round lead for b does not count
    c = _curves({"mnlp": a, "lc": b, "bald": a, "random": b})
    assert np.allclose(curve_gap(c, "mnlp", "random"), [0.1, 0.1, 0.1])
    verdicts = {cl.name: cl.verdict for cl in strategy_claims(c)}
    assert verdicts["mnlp_beats_random"] == "held" and verdicts["mnlp_beats_lc"] == "held"
    worse = _curves({"mnlp": b, "lc": a, "bald": b, "random": a})
    assert {cl.name: cl.verdict for cl in strategy_claims(worse)}["mnlp_beats_random"] == "not held"


def test_speed_claim_on_paired_ratios():
    assert speed_claim({"bilstm_crf": [2.0, 2.2, 1.9], "cnn_cnn_lstm": [1.0, 1.0, 1.0]}, 10).verdict == "held"
    assert speed_claim({"bilstm_crf": [1.0, 1.1, 0.9], "cnn_cnn_lstm": [1.0, 1.0, 1.0]}, 10).verdict == "not resolved"


def test_the_reference_is_the_best_converged_seed_and_one_target_for_all():
    up = [0.5, 0.8, 0.885, 0.9, 0.93]
    c = _curves({"mnlp": [up] * 3, "random": [up] * 3})
    c.full_f1 = {0: 0.85, 1: 0.91, 2: 0.88}  # best 0.91: target 0.9009, first reached at round 4 (0.10)
    assert reference_f1(c) == 0.91
    shares, censored = share_to_target(c)
    assert not censored and np.allclose(shares, 0.10)  # a per-seed target would give 0.06 for seed 0


def test_incremental_claims_pair_by_seed():
    inc = [[0.1, 0.6, 0.7], [0.2, 0.5, 0.8], [0.3, 0.7, 0.9]]
    close = [[0.9, 0.59, 0.69], [0.0, 0.5, 0.79], [0.3, 0.69, 0.9]]  # within 0.01 after the seed round
    c = _curves({"mnlp": inc, "random": inc})
    c.runs = {("mnlp", s): _run(inc[s], seconds=1.0) for s in range(3)} | {("random", s): _run(inc[s]) for s in range(3)}
    c.scratch = {s: _run(close[s], seconds=3.0 + 0.1 * s) for s in range(3)}
    assert np.allclose(curve_gap(c, "mnlp", "mnlp_scratch"), [0.01, 0.005, 0.005])
    assert set(curve_table(c)) == {"mnlp", "random", "mnlp_scratch"}
    verdicts = {cl.name: cl.verdict for cl in incremental_claims(c, margin=0.02)}
    assert verdicts == {"incremental_f1_within_scratch": "held", "incremental_cheaper_than_scratch": "held"}
    c.scratch = {s: _run([f + 0.2 for f in close[s]], seconds=0.5) for s in range(3)}  # scratch better and cheaper
    verdicts = {cl.name: cl.verdict for cl in incremental_claims(c, margin=0.02)}
    assert verdicts == {"incremental_f1_within_scratch": "not held", "incremental_cheaper_than_scratch": "not held"}
    c.scratch = {}
    assert incremental_claims(c) == []


def test_dev_split_is_disjoint_from_pool_and_checked():
    cfg = ExperimentConfig(n_pool=50, n_test=20, n_dev=30)
    (pool, test), dev = experiment_data(cfg), dev_split(cfg)
    assert len(dev) == 30
    train = read_conll(data_samples_dir() / "ner" / "news_train.conll")
    assert [s.tokens for s in pool] == [s.tokens for s in train[:50]]
    assert [s.tokens for s in dev] == [s.tokens for s in train[50:80]]  # the 30 right after the pool, never in it
    with pytest.raises(ValueError, match="n_dev"): dev_split(ExperimentConfig(n_pool=1990, n_dev=20))
    with pytest.raises(ValueError, match="n_dev"): dev_split(ExperimentConfig(n_dev=0))
