"""Checks of alignnb.sam pages 01 and 09: the pretraining prompts, DAVIS boundary F against a brute-force
definition, the scenario builders, and the claims' decision rules on fabricated studies."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.sam import (SCENARIOS, SamStudy, SamStudyConfig, boundary_f, error_points, jittered_box, mask_iou,
                         sam_loss, scenario_examples, scene_targets, seg2bmap, study_claims)
from alignnb.data import scene

torch.set_num_threads(1)


def _brute_boundary_f(pred, truth, r):
    """F from the definition: a boundary pixel matches when a boundary pixel of the other mask lies within r."""
    def bmap(m):  # a pixel differs from its right, lower or lower-right neighbour (outside the image: itself)
        H, W = m.shape
        out = np.zeros_like(m)
        for y in range(H):
            for x in range(W):
                nb = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
                out[y, x] = any(m[y, x] != m[j, i] for j, i in nb if j < H and i < W)
        return out
    fb, gb = bmap(pred), bmap(truth)
    if not fb.any() and not gb.any(): return 1.0
    if not fb.any() or not gb.any(): return 0.0
    fp, gp = np.argwhere(fb), np.argwhere(gb)
    d = np.sqrt(((fp[:, None] - gp[None]) ** 2).sum(-1))
    precision, recall = (d.min(1) <= r).mean(), (d.min(0) <= r).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 16), st.integers(1, 3))
def test_boundary_f_matches_brute_force(seed, r):
    rng = np.random.default_rng(seed)
    truth = np.zeros((20, 22), bool)
    truth[rng.integers(2, 8):rng.integers(10, 18), rng.integers(2, 8):rng.integers(10, 20)] = True
    pred = np.roll(truth, tuple(rng.integers(-3, 4, 2)), (0, 1)) | (rng.random((20, 22)) < 0.03)
    assert boundary_f(pred, truth, bound_th=r) == pytest.approx(_brute_boundary_f(pred, truth, r), abs=1e-9)


def test_boundary_f_special_cases():
    empty, sq = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    sq[4:10, 4:10] = True
    assert boundary_f(empty, empty) == 1.0 and boundary_f(sq, empty) == 0.0 and boundary_f(empty, sq) == 0.0
    assert boundary_f(sq, sq) == 1.0
    assert seg2bmap(sq).sum() > 0 and not seg2bmap(sq)[6:8, 6:8].any()
    with pytest.raises(ValueError, match="differ"): boundary_f(sq, sq[:5])


def test_sam_loss_back_propagates_only_the_best_mask():
    target = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    target[..., 2:6, 2:6] = True
    good = torch.where(target, 6.0, -6.0)[:, :, None]
    logits = torch.cat([torch.zeros_like(good), good, -good], 2).requires_grad_()
    loss, best = sam_loss(logits, torch.zeros(1, 1, 3), target)
    loss.backward()
    assert best.item() == 1
    assert logits.grad[:, :, 0].abs().sum() == 0 and logits.grad[:, :, 2].abs().sum() == 0


def test_error_points_and_boxes():
    rng = np.random.default_rng(0)
    target = torch.zeros(1, 2, 16, 16, dtype=torch.bool)
    target[:, :, 4:12, 4:12] = True
    pred = target.clone()
    pred[0, 0] = False  # all missed: a positive click inside the target
    pred[0, 1, 0:2, 0:2] = True  # an extra blob only: a negative click on it
    pts, lab = error_points(pred, target, rng)
    assert lab[0, 0, 0] == 1 and target[0, 0, int(pts[0, 0, 0, 1]), int(pts[0, 0, 0, 0])]
    assert lab[0, 1, 0] == 0 and int(pts[0, 1, 0, 0]) < 2 and int(pts[0, 1, 0, 1]) < 2
    _, lab = error_points(target, target, rng)
    assert (lab == -1).all()  # nothing to correct: padding
    x0, y0, x1, y1 = jittered_box(target[0, 0].numpy(), rng, jitter=0.0)
    assert (x0, y0, x1, y1) == (4.0, 4.0, 12.0, 12.0)
    for _ in range(50):
        b = jittered_box(target[0, 0].numpy(), rng)
        assert 0 <= b[0] <= 16 and 0 <= b[3] <= 16


def test_scene_targets_include_composites():
    s = next(s for s in (scene(i, image_size=128, related=1.0) for i in range(50))
             if any(p == "inside" for _, p, _ in s.relations))
    ts = scene_targets(s)
    a, _, b = next(r for r in s.relations if r[1] == "inside")
    assert any(np.array_equal(t, s.objects[a].mask | s.objects[b].mask) for t in ts)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_examples(name):
    exs = scenario_examples(name, 3, seed=7)
    assert len(exs) == 3 and all(e.mask.any() for e in exs)
    again = scenario_examples(name, 3, seed=7)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(exs, again))
    for e in exs:
        if e.box is not None:  # the intended mask lies inside the prompt's box, and is not all of what it holds
            x0, y0, x1, y1 = map(int, e.box)
            assert e.mask[y0:y1, x0:x1].sum() == e.mask.sum()
    with pytest.raises(ValueError, match="name must be one of"): scenario_examples("face", 1, 0)


def _fabricated(frozen, decoder, plm, pmm, bf_gain, K=3, N=30):
    cfg = SamStudyConfig(seeds=K, test=N)
    M = len(cfg.methods)
    rng = np.random.default_rng(0)
    iou = np.zeros((3, K, M, N))
    base = {"frozen SAM": frozen, "PerSAM": frozen, "PerSAM-F": frozen, "decoder": decoder, "PLM": plm, "PLM+PMM": pmm}
    for mi, m in enumerate(cfg.methods): iou[:, :, mi] = base[m] + rng.normal(0, 0.05, (3, K, N))
    bf = iou.copy()
    bf[:, :, cfg.methods.index("PLM+PMM")] = bf[:, :, cfg.methods.index("PLM")] + bf_gain + rng.normal(0, 0.02, (3, K, N))
    trainable = {m: 0 for m in cfg.methods} | {"decoder": 1000, "PLM": 200, "PLM+PMM": 250}
    return SamStudy(cfg, iou, bf, trainable, np.zeros((3, K, M)))


def test_claims_decide_both_ways():
    held = {c.name: c.verdict for c in study_claims(_fabricated(0.3, 0.9, 0.8, 0.85, 0.05))}
    assert held == {"plm_closes_gap": "held", "plm_pmm_closes_gap": "held", "pmm_improves_boundary_f": "held",
                    "fewer_parameters": "held"}
    not_held = {c.name: c.verdict for c in study_claims(_fabricated(0.3, 0.9, 0.4, 0.4, -0.05))}
    assert not_held["plm_closes_gap"] == "not held" and not_held["pmm_improves_boundary_f"] == "not held"
    c = next(c for c in study_claims(_fabricated(0.3, 0.9, 0.8, 0.8, 0.05)) if c.name == "plm_closes_gap")
    assert c.estimate == pytest.approx(0.2, abs=0.02)  # 0.8 - (0.3 + 0.9) / 2, by hand
    from alignnb.sam import gap_closed
    assert gap_closed(_fabricated(0.3, 0.9, 0.8, 0.8, 0.05), "PLM") == pytest.approx(5 / 6, abs=0.03)


def test_one_seed_claims_stay_undecided():
    verdicts = {c.name: c.verdict for c in study_claims(_fabricated(0.3, 0.9, 0.8, 0.85, 0.05, K=1))}
    assert verdicts == {"plm_closes_gap": "not resolved", "plm_pmm_closes_gap": "not resolved",
                        "pmm_improves_boundary_f": "not resolved", "fewer_parameters": "held"}
