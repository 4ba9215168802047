"Issue 14, cachegen: every public boundary returns a usable value or raises a named error."
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignnb.cachegen import CacheGenCodec, absmax_quantize, plan_stream, quantize_cache, quantize_dequantize
from alignnb.cachegen.experiments import SmallLMExperimentConfig, _small_lm_documents
from alignnb.hf import KVCache


def cache(L=2, H=2, T=6, D=4, Dv=None, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return KVCache([scale * torch.randn(H, T, D, generator=g) for _ in range(L)],
                   [scale * torch.randn(H, T, D if Dv is None else Dv, generator=g) for _ in range(L)])


# --- DeepSeek-V3-style attention: key and value head sizes differ ------------------------------------------------

def test_differing_key_and_value_head_sizes_are_rejected_by_name():
    with pytest.raises(ValueError, match="key and value head sizes differ .*DeepSeek-V3"): cache(Dv=3)
    # a KVCache whose lists were changed after construction reaches the codec: it checks again, by name
    c = cache()
    c.values = [v[..., :3] for v in c.values]
    for call in (lambda: CacheGenCodec(3, chunk_tokens=4, tables="inline").encode(c),
                 lambda: quantize_cache(c, [16, 16], [16, 16]), lambda: CacheGenCodec(3).fit([c])):
        with pytest.raises(ValueError, match="DeepSeek-V3"): call()


# --- non-finite and out-of-range values name the layer and K/V ----------------------------------------------------

def test_non_finite_values_name_layer_and_kind():
    c = cache()
    c.values[1][0, 2, 1] = float("nan")  # in place, after construction
    with pytest.raises(ValueError, match=r"values\[1\] holds 1 non-finite"):
        CacheGenCodec(3, chunk_tokens=4, tables="inline").encode(c)


def test_values_beyond_fp16_scales_name_layer_and_kind():
    c = cache()
    c.keys[1] = c.keys[1] * 1e5  # finite, but the per-token scales are float16
    with pytest.raises(ValueError, match=r"cache.keys\[1\] must be finite with magnitude <= 65504.*up to"):
        CacheGenCodec(3, chunk_tokens=4, tables="inline").encode(c)
    with pytest.raises(ValueError, match=r"cache.keys\[1\]"): quantize_dequantize(c, [16, 16], [16, 16])


def test_bins_per_layer_must_match_the_layers():
    with pytest.raises(ValueError, match=r"key_bins must give one bin count per layer \(2\), got 1"):
        quantize_cache(cache(), [16], [16, 16])  # zip used to drop the second layer silently


# --- plan_stream ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, text", [
    (dict(bandwidth_trace=[1e9, np.nan, 1e9]), "bandwidth_trace must be finite and > 0"),  # was levels [1, -1, 1]
    (dict(slo=np.nan), "slo must be finite and > 0"),
    (dict(slo=0.0), "slo must be finite and > 0"),
    (dict(chunk_sizes_per_level=[[1e6, -2e6]] * 3), "chunk_sizes_per_level must be finite and >= 0"),
    (dict(recompute_seconds_per_token=-1e-4), "recompute_seconds_per_token must be finite and >= 0"),
    (dict(text_bytes_per_token=-4.0), "text_bytes_per_token must be finite and >= 0"),
    (dict(estimator="last", initial_bandwidth=0), "initial_bandwidth must be finite and > 0"),
    (dict(chunk_tokens=[256, 256]), r"chunk_tokens must be an int or \(3,\)"),
    (dict(chunk_tokens=-1), "chunk_tokens must be finite and > 0"),
    (dict(chunk_sizes_per_level=np.zeros((0, 2)), bandwidth_trace=np.zeros(0)), "must be finite and > 0|N, levels >= 1"),
])
def test_plan_stream_rejects_bad_inputs_by_name(kwargs, text):
    args = dict(chunk_sizes_per_level=[[1e6, 2e6]] * 3, bandwidth_trace=[1e9, 1e8, 1e9], slo=0.5,
                recompute_seconds_per_token=1e-4)
    with pytest.raises(ValueError, match=text): plan_stream(**{**args, **kwargs})


def test_plan_stream_by_hand():
    # S / N = 0.125 s per chunk; chunk 1 at 1e8 bits/s: 8 * 1e6 / 1e8 = 0.08 s fits level 0 only, 0.16 s does not
    plan = plan_stream([[1e6, 2e6]] * 3, [1e9, 1e8, 1e9], 0.375, 1e-4)
    np.testing.assert_array_equal(plan.levels, [1, 0, 1])
    assert plan.ttft == pytest.approx(8 * 2e6 / 1e9 + 8 * 1e6 / 1e8 + 8 * 2e6 / 1e9)


# --- token ids past the model's context -----------------------------------------------------------------------------

def test_small_lm_config_past_the_context_is_named():
    config = SmallLMExperimentConfig(prefix_tokens=240, continuation_tokens=64)
    with pytest.raises(ValueError, match="prefix_tokens \\+ continuation_tokens = 304 exceed the small LM's context of 256"):
        _small_lm_documents(None, config)


def test_kv_cache_of_past_the_context_is_named():
    from transformers import GPT2Config, GPT2LMHeadModel
    from alignnb.hf import kv_cache_of
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)).eval()
    with pytest.raises(ValueError, match="exceed the model's context of 16 positions"):
        kv_cache_of(model, torch.randint(0, 32, (20,)))


# --- property test ---------------------------------------------------------------------------------------------------

SPECIAL = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e300, 1e-300, 65504.0, 7e4])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_plan_stream_finite_or_named_error(data):
    d = data.draw
    N, levels = d(st.integers(0, 4)), d(st.integers(0, 3))
    sizes = np.abs(np.random.default_rng(d(st.integers(0, 99))).normal(size=(N, levels))) * 1e6
    bw = np.full(d(st.sampled_from([N, N + 1])), 1e8)
    for arr in (sizes, bw):
        if arr.size and d(st.booleans()): arr.flat[d(st.integers(0, arr.size - 1))] = d(SPECIAL)
    slo, cost = d(st.one_of(SPECIAL, st.floats(1e-3, 10))), d(st.one_of(SPECIAL, st.floats(0, 1e-2)))
    estimator, initial = d(st.sampled_from(["oracle", "last", "psychic"])), d(st.one_of(SPECIAL, st.just(1e9)))
    try:
        plan = plan_stream(sizes, bw, slo, cost, estimator, initial_bandwidth=initial)
    except (ValueError, TypeError) as error:
        assert any(name in str(error) for name in ("chunk_sizes_per_level", "bandwidth_trace", "slo", "estimator",
                                                   "recompute_seconds_per_token", "initial_bandwidth", "chunk_tokens"))
        return
    assert plan.levels.shape == (N,) and plan.seconds.shape == (N,)
    assert np.isfinite(plan.seconds).all() and np.isfinite(plan.ttft) and ((plan.levels >= -1) & (plan.levels < levels)).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_codec_roundtrip_or_named_error(data):
    d = data.draw
    L, H, T, D = d(st.integers(1, 2)), d(st.integers(1, 2)), d(st.integers(1, 5)), d(st.integers(1, 3))
    dtype = d(st.sampled_from([torch.float32, torch.float16, torch.float64]))
    c = cache(L, H, T, D, seed=d(st.integers(0, 99)), scale=d(st.sampled_from([1e-30, 1.0, 1e3, 1e6])))
    c.keys, c.values = [k.to(dtype) for k in c.keys], [v.to(dtype) for v in c.values]
    if d(st.booleans()): c.keys[0].view(-1)[0] = torch.tensor(d(SPECIAL), dtype=torch.float64).to(dtype)  # may overflow to inf
    try:
        codec = CacheGenCodec(d(st.sampled_from([1, 3])), chunk_tokens=d(st.integers(1, 4)), tables="inline")
        decoded = codec.decode(codec.encode(c))
    except (ValueError, TypeError) as error:
        assert str(error)
        return
    assert decoded.n_layers == L and decoded.shape == (H, T, D)
    assert all(torch.isfinite(x).all() for x in decoded.keys + decoded.values)
    expected = quantize_dequantize(c, *codec.bins_for(L))
    for a, b in zip(decoded.keys + decoded.values, expected.keys + expected.values): torch.testing.assert_close(a, b)
