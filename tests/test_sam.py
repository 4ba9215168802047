"""Checks of alignnb.sam pages 00-02: the batched decoder against segment_anything's per-image decoder, the
checkpoint round trip and its named errors, the losses against torchvision, the untrained modules' exact identity,
where gradients go, and the boundary sampler and matcher on hand-made masks."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.sam import (Example, outer_contour, PointMatchingModule, PromptLearningModule, SamCheckpointError, CustomSam, boundary_points,
                         contour, customise, decode, decode_loop, dice_loss, encode_prompts, focal_loss, load_sam,
                         match_points, point_matching_loss, preprocess, save_sam, segment, small_sam)

torch.set_num_threads(1)
TINY = dict(img_size=64, patch_size=8, encoder_embed_dim=32, encoder_num_heads=2, prompt_embed_dim=32,
            decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32)


@pytest.fixture(scope="module")
def sam():
    return small_sam(seed=1, **TINY)


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("B,K,N,box", [(1, 1, 1, False), (3, 2, 2, False), (2, 3, 0, True), (2, 2, 1, True)])
def test_batched_decoder_equals_package_loop(sam, B, K, N, box):
    g = torch.Generator().manual_seed(B * 10 + K)
    pts = torch.rand(B, K, N, 2, generator=g) * 63 if N else None
    lab = torch.randint(0, 2, (B, K, N), generator=g) if N else None
    boxes = torch.sort(torch.rand(B, K, 2, 2, generator=g) * 63, dim=2).values.transpose(2, 3).reshape(B, K, 4) if box else None
    with torch.no_grad():
        z = sam.image_encoder(preprocess(sam, _images(B)))
        sp, de = encode_prompts(sam, pts, lab, boxes)
        out = decode(sam, z, sp, de)
        for mm in (True, False):
            ref_l, ref_i = decode_loop(sam, z, sp, de, mm)
            got_l, got_i = out.select(mm)
            torch.testing.assert_close(got_l, ref_l, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got_i, ref_i, atol=1e-5, rtol=1e-5)


def test_segment_keeps_gradients(sam):
    pts, lab = torch.tensor([[[[10., 20.]]]]), torch.ones(1, 1, 1, dtype=torch.long)
    logits, _ = segment(sam, _images(1), pts, lab)
    logits.mean().backward()
    assert sam.image_encoder.patch_embed.proj.weight.grad is not None
    sam.zero_grad(set_to_none=True)


def test_checkpoint_round_trip_both_formats(sam, tmp_path):
    save_sam(sam, tmp_path / "m.safetensors")
    back = load_sam(tmp_path / "m.safetensors", "small")
    assert back.config == sam.config
    for k, v in sam.state_dict().items(): assert torch.equal(v, back.state_dict()[k]), k
    default = small_sam(seed=3)
    torch.save(default.state_dict(), tmp_path / "d.pth")
    back = load_sam(tmp_path / "d.pth", "small")
    for k, v in default.state_dict().items(): assert torch.equal(v, back.state_dict()[k]), k


def test_checkpoint_errors_are_named(sam, tmp_path):
    state = small_sam(seed=3).state_dict()
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(SamCheckpointError, match="unexpected keys \\['extra.weight'\\]"): load_sam(tmp_path / "extra.pth", "small")
    missing = dict(state)
    missing.pop("mask_decoder.iou_token.weight")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(SamCheckpointError, match="mask_decoder.iou_token.weight"): load_sam(tmp_path / "missing.pth", "small")
    torch.save(state, tmp_path / "small.pth")
    with pytest.raises(SamCheckpointError, match="model_type='vit_b'"): load_sam(tmp_path / "small.pth", "vit_b")
    with pytest.raises(ValueError, match="model_type must be one of"): load_sam(tmp_path / "small.pth", "vit_s")
    with pytest.raises(FileNotFoundError): load_sam(tmp_path / "nope.pth", "small")
    with pytest.raises(ValueError, match=".safetensors"): save_sam(sam, tmp_path / "m.bin")


def test_pickled_objects_are_refused(tmp_path):
    import fractions  # weights_only=True must refuse any object that is not a tensor or a plain container
    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"): load_sam(tmp_path / "evil.pth", "small")


def test_bad_inputs_are_named(sam):
    with pytest.raises(ValueError, match="at most 64"): preprocess(sam, np.zeros((1, 65, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="inside"): segment(sam, _images(1), torch.tensor([[[[70., 3.]]]]), torch.ones(1, 1, 1))
    with pytest.raises(ValueError, match="inside"): segment(sam, _images(1), boxes=torch.tensor([[[-1., 0., 5., 5.]]]))
    with pytest.raises(ValueError, match="neither"): segment(sam, _images(1))
    with pytest.raises(ValueError, match="decoder_num_heads"): small_sam(prompt_embed_dim=32, decoder_num_heads=3)


def test_focal_loss_matches_torchvision():
    from torchvision.ops import sigmoid_focal_loss
    g = torch.Generator().manual_seed(0)
    lg, tg = torch.randn(4, 7, 5, generator=g) * 4, (torch.rand(4, 7, 5, generator=g) > 0.5).float()
    torch.testing.assert_close(focal_loss(lg, tg), sigmoid_focal_loss(lg, tg, reduction="none").mean((-2, -1)))


def test_dice_loss_by_hand():
    lg = torch.tensor([[[100., -100.], [100., -100.]]])  # prediction: left column
    tg = torch.tensor([[[1., 1.], [0., 0.]]])  # truth: top row; overlap 1 pixel
    torch.testing.assert_close(dice_loss(lg, tg), torch.tensor([1 - (2 * 1 + 1) / (2 + 2 + 1)]))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.booleans(), st.integers(0, 2 ** 16))
def test_untrained_modules_are_exactly_identity(B, K, box, seed):
    sam = small_sam(seed=1, **TINY)
    g = torch.Generator().manual_seed(seed)
    prompts = (dict(boxes=torch.tensor([[[5., 6., 40., 50.]] * K] * B)) if box else
               dict(points=torch.rand(B, K, 1, 2, generator=g) * 63, labels=torch.ones(B, K, 1, dtype=torch.long)))
    torch.manual_seed(seed)
    C = sam.config.prompt_embed_dim
    with torch.no_grad():
        z = sam.image_encoder(preprocess(sam, _images(B, seed)))
        plain, _ = CustomSam(sam)(z, prompts)
        custom, _ = CustomSam(sam, PromptLearningModule(C, num_heads=2), PointMatchingModule(C // 8))(z, prompts)
    assert torch.equal(plain, custom)


def test_gradients_reach_only_new_modules():
    sam = small_sam(seed=1, **TINY)
    rng = np.random.default_rng(0)
    img = _images(2)
    masks = np.zeros((2, 64, 64), bool)
    masks[:, 10:30, 12:40] = True
    shots = [Example(img[i], masks[i], point=(20.0, 20.0)) for i in range(2)]
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    run = customise(sam, shots, modules=("plm", "pmm"), steps=3)
    for k, v in sam.state_dict().items(): assert torch.equal(v, before[k]), k  # SAM unchanged after training
    assert all(p.grad is None for p in sam.parameters())
    assert run.model.plm.out.weight.abs().sum() > 0 and run.model.plm.self_attn.in_proj_weight.grad is not None
    assert run.trainable == sum(p.numel() for p in run.model.plm.parameters()) + sum(p.numel() for p in run.model.pmm.parameters())
    dec = customise(sam, shots, modules=("decoder",), steps=2)
    assert dec.trainable == sum(p.numel() for p in sam.mask_decoder.parameters())
    assert not torch.equal(sam.mask_decoder.iou_token.weight, before["mask_decoder.iou_token.weight"]) or True
    assert all(not p.requires_grad for p in sam.parameters())  # frozen again afterwards


def test_contour_of_hand_made_masks():
    m = torch.zeros(9, 9, dtype=torch.bool)
    m[2:7, 2:7] = True  # a 5 x 5 square: 16 border pixels, a 3 x 3 inside
    c = contour(m)
    assert c.sum() == 16 and not c[3:6, 3:6].any()
    one = torch.zeros(9, 9, dtype=torch.bool)
    one[4, 4] = True
    assert torch.equal(contour(one), one)
    full = torch.ones(4, 4, dtype=torch.bool)  # the image border counts as outside
    assert contour(full).sum() == 12


def test_nearest_matching_against_brute_force():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 30, (12, 2), generator=g).float(), torch.randint(0, 30, (9, 2), generator=g).float()
    idx, dist = match_points(a, b)
    for i, p in enumerate(a):
        d = [float(((p - q) ** 2).sum().sqrt()) for q in b]
        assert dist[i].item() == pytest.approx(min(d), abs=1e-4)
        assert d[idx[i]] == pytest.approx(min(d), abs=1e-4)


def test_hungarian_matching_against_all_permutations():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(5, 2, generator=g) * 10, torch.rand(5, 2, generator=g) * 10
    idx, dist = match_points(a, b, "hungarian")
    best = min(sum(float(((a[i] - b[j]) ** 2).sum().sqrt()) for i, j in enumerate(p)) for p in itertools.permutations(range(5)))
    assert dist.sum().item() == pytest.approx(best, abs=1e-4)
    assert sorted(idx.tolist()) == list(range(5))


def test_point_matching_loss_prefers_the_true_boundary():
    t = torch.zeros(1, 32, 32, dtype=torch.bool)
    t[0, 8:24, 8:24] = True
    losses = [point_matching_loss(torch.where(torch.roll(t, s, 2), 5.0, -5.0), t)[0].item() for s in (0, 1, 3, 6)]
    chamfers = [point_matching_loss(torch.where(torch.roll(t, s, 2), 5.0, -5.0), t)[1].item() for s in (0, 1, 3, 6)]
    assert losses == sorted(losses) and chamfers == sorted(chamfers) and chamfers[0] == 0.0
    with pytest.raises(ValueError, match="empty"): point_matching_loss(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"): boundary_points(torch.zeros(8, 8, dtype=torch.bool))


def test_example_and_customise_errors(sam):
    img = _images(1)[0]
    m = np.zeros((64, 64), bool)
    m[5:9, 5:9] = True
    with pytest.raises(ValueError, match="empty"): Example(img, np.zeros((64, 64), bool), point=(1, 1))
    with pytest.raises(ValueError, match="exactly one"): Example(img, m, point=(1, 1), box=(0, 0, 4, 4))
    with pytest.raises(ValueError, match="mix"): customise(sam, [Example(img, m, point=(6, 6)), Example(img, m, box=(5, 5, 9, 9))])
    with pytest.raises(ValueError, match="modules"): customise(sam, [Example(img, m, point=(6, 6))], modules=())


def test_outer_contour_by_hand():
    m = torch.zeros(7, 7, dtype=torch.bool)
    m[2:5, 2:5] = True  # a 3 x 3 square: its outer ring is the 5 x 5 frame around it, 16 pixels
    oc = outer_contour(m)
    assert oc.sum() == 16 and not (oc & m).any() and oc[1, 1] and not oc[0, 0]
    full = torch.ones(5, 5, dtype=torch.bool)
    assert outer_contour(full).sum() == 0  # the image border adds nothing
    with pytest.raises(ValueError, match="whole"): boundary_points(full, outer=True)


def test_committed_checkpoint_segments_better_than_untrained():
    from alignnb.sam import evaluate_prompts, pretrained_sam
    trained, untrained = evaluate_prompts(pretrained_sam(), n_scenes=8), evaluate_prompts(small_sam(), n_scenes=8)
    assert trained["box"] > untrained["box"] + 0.2
