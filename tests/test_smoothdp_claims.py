"""The claim logic of the smoothed-DP reproduction, driven with synthetic per-unit results.

Each experiment's claims are computed from what it keeps per unit (sets and pairs of series, test sentences, test
sequences, initialisations); here those arrays are made up so that the verdict is known in advance: a clear effect
gives `held`, the opposite effect `not held`, and an effect at the threshold `not resolved`.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from seqeval.metrics import f1_score

from alignnb.core import Claim, Result
from alignnb.smoothdp.experiments import (AlignmentResult, AttentionResult, TaggingResult, alignment_claims,
                                          attention_claims, crossed_bootstrap, entity_counts, f1_from_counts,
                                          tagging_claims)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
REPRODUCTION = Path(__file__).parent.parent / "data_samples" / "reproductions" / "smoothdp.json"


def verdicts(claims):
    return {c.name: c.verdict for c in claims}


# --- the two-way bootstrap ---------------------------------------------------------------------------------------

def test_crossed_bootstrap_one_seed_matches_the_normal_interval():
    units = np.random.default_rng(1).normal(0.3, 1.0, (1, 900))
    estimate, low, high = crossed_bootstrap(units, np.mean)
    assert estimate == pytest.approx(units.mean())
    assert high - low == pytest.approx(2 * 1.96 / 30, rel=0.1)  # s.d. 1 over sqrt(900) units
    assert low < units.mean() < high


def test_crossed_bootstrap_counts_the_spread_of_the_seeds():
    units = np.random.default_rng(2).normal(0.0, 1.0, (1, 400))
    seeds = np.concatenate([units + shift for shift in (-1.0, 0.0, 1.0)])  # the same units, three offset seeds
    _, low1, high1 = crossed_bootstrap(units, np.mean)
    _, low3, high3 = crossed_bootstrap(seeds, np.mean)
    assert high3 - low3 > 3 * (high1 - low1)


def test_crossed_bootstrap_rejects_a_flat_array():
    with pytest.raises(ValueError, match="values needs shape"):
        crossed_bootstrap(np.zeros(10), np.mean)


# --- tagging -----------------------------------------------------------------------------------------------------

def test_entity_counts_give_seqeval_f1_on_any_subset():
    rng = np.random.default_rng(3)
    gold = [list(rng.choice(TAGS, size=rng.integers(3, 12))) for _ in range(60)]
    predicted = [[t if rng.random() < 0.8 else str(rng.choice(TAGS)) for t in s] for s in gold]
    counts = entity_counts(gold, predicted)
    assert counts.shape == (60, 3)
    assert f1_from_counts(counts) == pytest.approx(f1_score(gold, predicted))
    subset = rng.integers(0, 60, 60)  # a bootstrap resample is scored as seqeval scores those sentences
    assert f1_from_counts(counts[subset]) == pytest.approx(f1_score([gold[i] for i in subset],
                                                                    [predicted[i] for i in subset]))


def _tagging_result(recall, nonzero_per_token, seeds=3, sentences=400, seed=0):
    "Per-sentence counts where each loss finds each of 2 gold entities with probability recall[loss], no false ones."
    rng = np.random.default_rng(seed)
    counts, nonzero = {}, {}
    for loss, r in recall.items():
        correct = rng.binomial(2, r, (seeds, sentences)).astype(float)
        counts[loss] = np.stack([correct, correct, np.full_like(correct, 2.0)], -1)
        nonzero[loss] = rng.poisson(nonzero_per_token * 10, (seeds, sentences)).astype(float)  # 10 tokens each
    f1 = {k: float(f1_from_counts(v).mean()) for k, v in counts.items()}
    return TaggingResult(f1, {}, {}, [["w"] * 10] * sentences, TAGS, counts, nonzero)


def test_tagging_claims_held_when_viterbi_wins_and_l2_is_sparse():
    result = _tagging_result({"softmax": 0.80, "entropy": 0.90, "l2": 0.90}, nonzero_per_token=1.1)
    assert verdicts(tagging_claims(result)) == {"viterbi_f1_vs_softmax": "held", "l2_marginals_sparse": "held"}


def test_tagging_claims_not_held_when_one_viterbi_loss_loses():
    # the entropy model wins, the L2 model loses clearly: the claim is about both, so it fails
    result = _tagging_result({"softmax": 0.85, "entropy": 0.95, "l2": 0.70}, nonzero_per_token=3.0)
    assert verdicts(tagging_claims(result)) == {"viterbi_f1_vs_softmax": "not held", "l2_marginals_sparse": "not held"}


def test_tagging_claims_not_resolved_at_the_margin():
    # both Viterbi losses one point below the softmax, on the non-inferiority margin; 2.0 tags per token, on the bar
    result = _tagging_result({"softmax": 0.86, "entropy": 0.85, "l2": 0.85}, nonzero_per_token=2.0, seeds=2,
                             sentences=150)
    assert verdicts(tagging_claims(result)) == {"viterbi_f1_vs_softmax": "not resolved",
                                                "l2_marginals_sparse": "not resolved"}


# --- attention ---------------------------------------------------------------------------------------------------

def _attention_result(error, zero_fraction, runs, seeds=3, sequences=300, seed=0):
    rng = np.random.default_rng(seed)
    per_sequence = {kind: {"squared_error": rng.exponential(error[kind], (seeds, sequences)),
                           "zero_fraction": rng.uniform(0, 2 * zero_fraction, (seeds, sequences)),
                           "runs": 1 + rng.poisson(runs - 1, (seeds, sequences)).astype(float)}
                    for kind in ("softmax", "sparsemax", "entropy", "l2")}
    return AttentionResult(0.03, {}, {}, None, None, per_sequence)


def test_attention_claims_held_for_a_sparse_contiguous_accurate_chain():
    result = _attention_result({"softmax": 0.005, "sparsemax": 0.004, "entropy": 0.0001, "l2": 0.0003},
                               zero_fraction=0.7, runs=1.05)
    assert set(verdicts(attention_claims(result)).values()) == {"held"}


def test_attention_claims_fail_each_on_its_own_quantity():
    # L2 no better than sparsemax, dense, fragmented: three `not held`
    result = _attention_result({"softmax": 0.005, "sparsemax": 0.004, "entropy": 0.0001, "l2": 0.004},
                               zero_fraction=0.3, runs=2.5)
    assert verdicts(attention_claims(result)) == {"l2_attention_error": "not held", "l2_attention_sparse": "not held",
                                                  "l2_attention_contiguous": "not held"}


def test_attention_error_claim_uses_the_better_per_position_attention():
    # L2 is under half the softmax's error but not under half the sparsemax's: the claim names the better one
    result = _attention_result({"softmax": 0.010, "sparsemax": 0.002, "entropy": 0.0001, "l2": 0.0015},
                               zero_fraction=0.7, runs=1.05)
    assert verdicts(attention_claims(result))["l2_attention_error"] == "not held"


# --- alignment ---------------------------------------------------------------------------------------------------

def _alignment_result(barycenter_share, l2_support, sets=6, series=8, seed=0):
    rng = np.random.default_rng(seed)
    euclidean = rng.uniform(0.4, 0.8, (sets, series))
    barycenter = euclidean * rng.uniform(barycenter_share - 0.05, barycenter_share + 0.05, (sets, series))
    pairs = sets * series // 2
    support = {("entropy", g): np.ones(pairs) for g in l2_support}
    support.update({("l2", g): np.clip(rng.normal(s, 0.02, pairs), 0, 1) for g, s in l2_support.items()})
    return AlignmentResult(None, None, None, {}, euclidean, barycenter, support)


def test_alignment_claims_held_and_not_held():
    good = _alignment_result(0.25, {0.01: 0.15, 0.1: 0.2, 1.0: 0.6})
    assert set(verdicts(alignment_claims(good)).values()) == {"held"}
    # dense L2 at the largest γ alone breaks "at every γ"; a barycenter as far as the mean breaks the first claim
    bad = _alignment_result(0.9, {0.01: 0.15, 0.1: 0.2, 1.0: 0.95})
    assert set(verdicts(alignment_claims(bad)).values()) == {"not held"}


# --- the committed full run --------------------------------------------------------------------------------------

def test_committed_full_run_keeps_every_claim_with_its_interval():
    summary = json.loads(REPRODUCTION.read_text())
    assert summary["quick"] is False
    record = next(m for m in summary["methods"] if m["method"] == "smoothdp")
    result = Result.from_dict(record["result"])
    assert [c.name for c in result.claims] == [
        "barycenter_vs_euclidean_mean", "l2_alignments_sparse", "viterbi_f1_vs_softmax", "l2_marginals_sparse",
        "l2_attention_error", "l2_attention_sparse", "l2_attention_contiguous"]
    for saved, claim in zip(record["result"]["claims"], result.claims):
        assert claim.low <= claim.estimate <= claim.high
        assert saved["verdict"] == claim.verdict  # the stored verdict is the one its interval implies
    assert "initialisations" in result.claims[2].interval and result.ours["tagging initialisations"] > 1
    assert not record["result"].get("passed") and not record["result"].get("criterion")  # verdicts from claims only
