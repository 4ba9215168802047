"The captioning claims follow the paired per-image differences they are built from."
import numpy as np

from alignnb.captioning.experiments import CaptionStudy, caption_claims

NAMES = ("Up-Down", "spatial GCN-LSTM", "semantic GCN-LSTM", "fused GCN-LSTM")


def _study(gain: dict, rel_gain: float = 0.0, n: int = 60) -> CaptionStudy:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, n)
    cider = {k: base + gain.get(k, 0.0) + rng.normal(0, 0.01, n) * (k != "Up-Down") for k in NAMES}
    rel = {k: np.full(n, 0.3 + (rel_gain if k == "fused GCN-LSTM" else 0.0)) for k in NAMES}
    return CaptionStudy({k: ["a"] * n for k in NAMES}, cider, {k: 0.1 for k in NAMES}, rel, np.ones(10))


def test_a_clear_gain_is_held_a_clear_loss_not_held_and_none_not_resolved():
    claims = {c.name: c for c in caption_claims(_study({"fused GCN-LSTM": 0.05, "semantic GCN-LSTM": -0.05}, 0.2))}
    assert claims["fused_cider_gain"].verdict == "held"
    assert abs(claims["fused_cider_gain"].estimate - 5.0) < 0.5  # reported as CIDEr-D x100
    assert claims["semantic_cider_gain"].verdict == "not held"
    assert claims["spatial_cider_gain"].verdict == "not resolved"
    assert claims["fused_relation_gain"].verdict == "held"


def test_every_claim_keeps_its_interval_around_the_estimate():
    for c in caption_claims(_study({"spatial GCN-LSTM": 0.01})):
        assert c.low <= c.estimate <= c.high and c.threshold == 0.0 and "SCST" in c.note
