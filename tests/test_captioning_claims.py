"The captioning claims follow the per-image differences they are built from, crossed over seeds x images."
import numpy as np

from alignnb.captioning.experiments import MODELS, STAGES, CaptionStudy, caption_claims


def _study(gain: dict, rel_gain: float = 0.0, n: int = 60, seed: int = 0, scst: float = 0.0) -> CaptionStudy:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.6, n)
    cider = {st: {k: base + gain.get(k, 0.0) + (scst if st == "SCST" else 0.0) + rng.normal(0, 0.01, n) *
                  (k != "Up-Down") for k in MODELS} for st in STAGES}
    rel = {st: {k: np.full(n, 0.3 + (rel_gain if k == "fused GCN-LSTM" else 0.0)) for k in MODELS} for st in STAGES}
    caps = {st: {k: [f"c{i}" for i in range(n)] for k in MODELS} for st in STAGES}
    ground = {st: {k: np.ones((n, 2)) for k in MODELS} for st in STAGES}
    return CaptionStudy(caps, cider, {st: {k: 0.1 for k in MODELS} for st in STAGES}, rel, ground, np.ones(10),
                        {"colour": 1.0}, {}, [None] * n)


def test_a_clear_gain_is_held_a_clear_loss_not_held_and_none_not_resolved():
    studies = [_study({"fused GCN-LSTM": 0.05, "semantic GCN-LSTM": -0.05}, 0.2, seed=s, scst=0.03) for s in range(3)]
    claims = {c.name: c for c in caption_claims(studies)}
    assert claims["fused_cider_gain"].verdict == "held"
    assert abs(claims["fused_cider_gain"].estimate - 5.0) < 0.5  # reported as CIDEr-D x100
    assert claims["semantic_cider_gain"].verdict == "not held"
    assert claims["spatial_cider_gain"].verdict == "not resolved"
    assert claims["fused_relation_gain"].verdict == "held"
    assert claims["scst_cider_gain"].verdict == "held" and abs(claims["scst_cider_gain"].estimate - 3.0) < 0.5
    assert "3 training seeds x 60 test images" in claims["fused_cider_gain"].interval


def test_every_claim_keeps_its_interval_around_the_estimate_and_notes_caption_variety():
    for c in caption_claims(_study({"spatial GCN-LSTM": 0.01})):
        assert c.low <= c.estimate <= c.high and c.threshold == 0.0
        assert "60/60 distinct" in c.note and "relation-word accuracy 0.30" in c.note
