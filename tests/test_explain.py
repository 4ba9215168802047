"""alignnb.explain.attribution against Captum on the same model, baseline and seed; brute-force Shapley; properties."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.explain.attribution import (
    VOCAB, _baseline_embeds, attribute, exact_shapley, gradient_saliency, gradient_x_input, integrated_gradients,
    kernel_shap, lime, load_classifier, margin, occlusion, quadrature, rationale_task, smoothgrad)

captum = pytest.importorskip("captum.attr")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = load_classifier().double()
    task = rationale_task(4, seed=11)
    return model, task.input_ids, task.attention_mask, task.labels


def _forward(model):
    return lambda e, mask, y: margin(model(inputs_embeds=e, attention_mask=mask), y)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle"])
def test_integrated_gradients_match_captum(setup, rule):
    model, ids, mask, y = setup
    ours, delta = integrated_gradients(model, ids, y, mask, n_steps=20, rule=rule, return_delta=True)
    ig = captum.IntegratedGradients(_forward(model))
    theirs, their_delta = ig.attribute(model.embed(ids).detach(), baselines=_baseline_embeds(model, ids, "pad"),
                                       additional_forward_args=(mask, y), n_steps=20, method=rule,
                                       return_convergence_delta=True)
    theirs = theirs.sum(-1) * mask
    if rule == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n with halved ends: they sum to (n - 1)/n, not 1 (its step_sizes), so its
        # integral is the trapezoid rule scaled by (n - 1)/n; ours uses the step 1/(n - 1) and sums to 1
        torch.testing.assert_close(ours * 19 / 20, theirs, atol=1e-6, rtol=1e-5)
        return
    # Captum builds its Riemann nodes with a float32 linspace, hence 1e-6 and not 1e-12
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(delta, their_delta, atol=1e-4, rtol=1e-3)


def test_layer_integrated_gradients_match_captum(setup):
    "LayerIG on the token embedding with [PAD]-id baselines is IG on embeddings with the pad baseline."
    model, ids, mask, y = setup
    base_ids = torch.where((ids == 1) | (ids == 0), ids, torch.zeros_like(ids))
    lig = captum.LayerIntegratedGradients(lambda i, m, t: margin(model(i, m), t), model.tokens)
    theirs = lig.attribute(ids, baselines=base_ids, additional_forward_args=(mask, y), n_steps=50)
    torch.testing.assert_close(integrated_gradients(model, ids, y, mask), theirs.sum(-1) * mask, atol=1e-8, rtol=1e-6)


def test_saliency_and_input_x_gradient_match_captum(setup):
    model, ids, mask, y = setup
    e = model.embed(ids).detach()
    sal = captum.Saliency(_forward(model)).attribute(e, additional_forward_args=(mask, y), abs=True)
    torch.testing.assert_close(gradient_saliency(model, ids, y, mask), sal.norm(dim=-1) * mask)
    ixg = captum.InputXGradient(_forward(model)).attribute(e, additional_forward_args=(mask, y))
    torch.testing.assert_close(gradient_x_input(model, ids, y, mask), ixg.sum(-1) * mask)


def test_occlusion_matches_captum(setup):
    model, ids, mask, y = setup
    D = model.config.d_model
    occ = captum.Occlusion(_forward(model)).attribute(
        model.embed(ids).detach(), sliding_window_shapes=(1, D), strides=(1, D),
        baselines=_baseline_embeds(model, ids, "pad"), additional_forward_args=(mask, y), perturbations_per_eval=64)
    torch.testing.assert_close(occlusion(model, ids, y, mask), occ[..., 0].double() * mask, atol=1e-6, rtol=1e-5)


def test_kernel_shap_agrees_with_captum_and_exact_shapley(setup):
    model, ids, mask, y = setup
    row = int(np.argmin(mask.sum(1).numpy()))
    ids, mask, y = ids[row:row + 1], mask[row:row + 1], y[row:row + 1]
    T, D = ids.shape[1], model.config.d_model
    exact = exact_shapley(model, ids, y, mask)[0]
    feature_mask = torch.arange(T)[None, :, None].expand(1, T, D)
    theirs = captum.KernelShap(_forward(model)).attribute(
        model.embed(ids).detach(), baselines=_baseline_embeds(model, ids, "pad"), additional_forward_args=(mask, y),
        feature_mask=feature_mask, n_samples=3000, perturbations_per_eval=500)[0, :, 0].double() * mask[0]
    torch.manual_seed(0)
    ours = kernel_shap(model, ids, y, mask, n_samples=3000, seed=0)[0]
    scale = exact.abs().max()
    assert (ours - exact).abs().max() < 0.1 * scale
    assert (theirs - exact).abs().max() < 0.15 * scale
    assert np.corrcoef(ours.numpy(), theirs.numpy())[0, 1] > 0.97
    torch.testing.assert_close(kernel_shap(model, ids, y, mask, n_samples=None)[0], exact, atol=1e-9, rtol=1e-7)


def test_brute_force_shapley_on_an_additive_game():
    "On a model whose margin is a sum over tokens, the Shapley value of a token is its own term, brute force or not."
    class Additive(torch.nn.Module):
        pad_id = 0
        def __init__(self):
            super().__init__()
            self.tokens = torch.nn.Embedding(len(VOCAB), 1)
        def embed(self, ids): return self.tokens(ids)
        def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
            s = (inputs_embeds[..., 0] * attention_mask).sum(1)
            return torch.stack([-s / 2, s / 2], -1)
    m = Additive().double()
    task = rationale_task(3, seed=5)
    e, b = m.embed(task.input_ids).detach()[..., 0], _baseline_embeds(m, task.input_ids, "pad")[..., 0]
    expected = (e - b) * task.attention_mask * torch.where(task.labels == 1, 1.0, -1.0)[:, None]
    for fn in (exact_shapley, occlusion, kernel_shap):
        torch.testing.assert_close(fn(m, task.input_ids, task.labels, task.attention_mask), expected)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 64), rule=st.sampled_from(["gausslegendre", "riemann_trapezoid", "riemann_middle",
                                                    "riemann_left", "riemann_right"]))
def test_quadrature_weights_sum_to_one_on_the_unit_interval(n, rule):
    alphas, weights = quadrature(n, rule)
    assert abs(weights.sum() - 1) < 1e-12 and alphas.min() >= 0 and alphas.max() <= 1 and len(alphas) == n


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), n_samples=st.integers(20, 200))
def test_kernel_shap_is_efficient_for_any_sample(setup, seed, n_samples):
    "Efficiency (10) holds exactly for sampled coalitions too: the scores sum to f(all) - f(none)."
    model, ids, mask, y = setup
    ids, mask, y = ids[:1], mask[:1], y[:1]
    s = kernel_shap(model, ids, y, mask, n_samples=n_samples, seed=seed)
    full = exact_shapley(model, ids, y, mask)
    torch.testing.assert_close(s.sum(), full.sum(), atol=1e-9, rtol=1e-9)


def test_methods_put_zero_on_padding_and_are_seeded(setup):
    model, ids, mask, y = setup
    for name in ("saliency", "grad_x_input", "ig_gauss", "smoothgrad", "occlusion", "lime", "kernel_shap"):
        s = attribute(name, model, ids, y, mask)
        assert s.shape == ids.shape and (s[mask == 0] == 0).all(), name
    torch.testing.assert_close(smoothgrad(model, ids, y, mask, seed=3), smoothgrad(model, ids, y, mask, seed=3))
    assert not torch.allclose(lime(model, ids, y, mask, seed=1), lime(model, ids, y, mask, seed=2))


def test_bad_inputs_raise_named_errors(setup):
    model, ids, mask, y = setup
    with pytest.raises(ValueError, match="method must be one of"): attribute("attention", model, ids, y)
    with pytest.raises(ValueError, match="input_ids must be"): integrated_gradients(model, ids[0], y)
    with pytest.raises(ValueError, match="target must be"): integrated_gradients(model, ids, y[:2])
    with pytest.raises(ValueError, match="attention_mask must have shape"): occlusion(model, ids, y, mask[:, :3])
    with pytest.raises(ValueError, match="rule must be one of"): quadrature(5, "simpson")
    with pytest.raises(TypeError, match="embed"): integrated_gradients(torch.nn.Linear(2, 2), ids, y)
    with pytest.raises(ValueError, match="sequence length"): load_classifier()(torch.ones(1, 40, dtype=torch.long))
