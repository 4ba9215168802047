"""CacheGen codec: exact round trips, brute-force references, peer cross-checks (constriction, zstandard,
transformers) and hypothesis fuzzing of the decoder."""
import math
import struct
import zlib

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st

from alignnb.cachegen import (CacheGenCodec, CorruptStreamError, KVCache, absmax_dequantize, absmax_quantize,
                              anchor_delta, counts_to_frequencies, ideal_bits, kivi_baseline, kv_cache_into,
                              kv_cache_of, continuation_perplexity, plan_stream, quantize_dequantize, released_bins,
                              undo_anchor_delta, zstd_baseline, fp16_bytes, _HEADER)

HEAD = _HEADER.size  # fixed part of the header, in bytes


def smooth_cache(L=2, H=2, T=37, D=4, seed=0, dtype=torch.float32):
    """A cache with token-wise locality: a random walk along tokens plus per-channel offsets."""
    rng = np.random.default_rng(seed)
    def one():
        walk = np.cumsum(rng.normal(0, 0.3, (H, T, D)), axis=1) + rng.normal(0, 2, (H, 1, D))
        return torch.tensor(walk, dtype=torch.float32).to(dtype)
    return KVCache([one() for _ in range(L)], [one() for _ in range(L)])


@pytest.fixture(scope="module")
def fitted():
    caches = [smooth_cache(seed=s, T=60) for s in range(3)]
    return CacheGenCodec(chunk_tokens=16).fit(caches), caches


# ---------------------------------------------------------------- references written loop by loop

def ref_absmax(x, bins):
    C = bins // 2 - 1
    q = np.zeros(x.shape, np.int64); out = np.zeros(x.shape, np.float64)
    for t in range(x.shape[0]):
        m = float(np.float16(max(abs(float(v)) for v in x[t])))
        for c in range(x.shape[1]):
            s = m if m > 0 else 1.0
            q[t, c] = min(max(round(float(x[t, c]) * C / s), -C), C) + C
            out[t, c] = (q[t, c] - C) * m / C
    return q, out


def test_quantiser_matches_loop_reference():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(7, 9)) * rng.uniform(0.1, 5, (7, 1))).astype(np.float32)
    for bins in (4, 12, 32, 256):
        q, s = absmax_quantize(x, bins)
        rq, rout = ref_absmax(x, bins)
        # np.rint rounds half to even, Python's round too: the symbols agree exactly
        np.testing.assert_array_equal(q, rq)
        np.testing.assert_allclose(absmax_dequantize(q, s, bins), rout, rtol=1e-6, atol=1e-7)


def test_anchor_delta_matches_definition():
    rng = np.random.default_rng(2)
    q = rng.integers(0, 31, (23, 5)).astype(np.int32)
    a, d = anchor_delta(q, 10, 15)
    expected_d = [q[t] - q[(t // 10) * 10] + 30 for t in range(23) if t % 10]
    np.testing.assert_array_equal(a, q[[0, 10, 20]])
    np.testing.assert_array_equal(d, np.array(expected_d))
    np.testing.assert_array_equal(undo_anchor_delta(a, d, 10, 15), q)


def test_released_bins_32_layers_match_the_artefact():
    k, v = released_bins(32)
    assert k == (32,) * 10 + (16,) * 22 and v == (32,) * 2 + (16,) * 30
    k1, v1 = released_bins(30, level=1)
    assert k1 == (16,) * 20 + (12,) * 10 and set(v1) == {16, 12}
    assert released_bins(32, level=3) == ((32,) * 32, (32,) * 32)


def test_kivi_matches_loop_reference():
    c = smooth_cache(L=1, H=1, T=80, D=32, seed=3)
    bits, recon = kivi_baseline(c, 2, group=32, residual=16)
    x = c.keys[0][0].numpy().astype(np.float64)  # (T, D), one head so channels = D
    xv = c.values[0][0].numpy().astype(np.float64)
    n_q = (80 - 16) // 32 * 32
    def mm(g):
        lo = float(np.float16(g.min())); s = float(np.float16((g.max() - lo) / 3)) or 1.0
        return np.clip(np.rint((g - lo) / s), 0, 3) * s + lo
    ref_k, ref_v = x.copy(), xv.copy()
    for ref in (ref_k, ref_v): ref[n_q:] = ref[n_q:].astype(np.float16)  # the residual tokens are kept in fp16
    for start in range(0, n_q, 32):
        for ch in range(32): ref_k[start:start + 32, ch] = mm(x[start:start + 32, ch])
    for t in range(n_q): ref_v[t] = mm(xv[t])
    np.testing.assert_allclose(recon.keys[0][0].numpy(), ref_k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(recon.values[0][0].numpy(), ref_v, rtol=1e-5, atol=1e-5)
    assert math.isclose(bits, (n_q * 32 * 2 + 2 * n_q * 16 + (80 - n_q) * 32 * 16) / (80 * 32))


# ---------------------------------------------------------------- the codec

@pytest.mark.parametrize("tables", ["profiled", "inline"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_round_trip_is_the_quantiser_bit_for_bit(fitted, tables, dtype):
    codec, caches = fitted
    if tables == "inline": codec = CacheGenCodec(chunk_tokens=16, tables="inline")
    c = smooth_cache(seed=9, T=45, dtype=dtype)
    out = codec.decode(codec.encode(c))
    ref = quantize_dequantize(c, *codec.bins_for(c.n_layers))
    assert out.dtype == dtype
    for a, b in zip(out.keys + out.values, ref.keys + ref.values): assert torch.equal(a, b)


def test_chunks_decode_independently(fitted):
    """Encoding tokens [16, 32) alone equals chunk 1 of the whole: anchors restart at chunk starts."""
    codec, _ = fitted
    c = smooth_cache(seed=4, T=48)
    whole = codec.decode(codec.encode(c))
    part = KVCache([k[:, 16:32] for k in c.keys], [v[:, 16:32] for v in c.values])
    alone = codec.decode(codec.encode(part))
    for a, b in zip(alone.keys, whole.keys): assert torch.equal(a, b[:, 16:32])


def test_coder_is_within_one_percent_of_entropy_and_constriction_decodes_it(fitted):
    import constriction
    codec, _ = fitted
    c = smooth_cache(seed=5, T=160)
    stream, stats = CacheGenCodec(chunk_tokens=160).fit([smooth_cache(seed=s, T=160) for s in range(3)]).encode_with_stats(c)
    assert 8 * stats["coded_bytes"] <= 1.01 * stats["ideal_bits"] + 64
    # independent: an ideal code length computed directly from a table
    freq = counts_to_frequencies(np.array([[3, 1, 0, 4]]))
    sym = np.array([[0], [3], [3], [1]])
    assert math.isclose(ideal_bits(sym, freq), -sum(math.log2(freq[0, s] / freq.sum()) for s in (0, 3, 3, 1)))
    # constriction round trip of the same kind of call the codec makes
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(np.array([0, 3, 3, 1], np.int32), constriction.stream.model.Categorical(freq[0].astype(float), perfect=False))
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    np.testing.assert_array_equal(dec.decode(constriction.stream.model.Categorical(freq[0].astype(float), perfect=False), 4), [0, 3, 3, 1])


def test_delta_coding_pays_off_on_smooth_caches():
    fit = [smooth_cache(seed=s, T=100, D=16) for s in range(3)]
    test = smooth_cache(seed=7, T=100, D=16)
    with_delta = len(CacheGenCodec(chunk_tokens=100).fit(fit).encode(test))
    no_delta = len(CacheGenCodec(chunk_tokens=100, group_size=1).fit(fit).encode(test))
    assert with_delta < 0.9 * no_delta


def test_encode_errors_name_the_argument(fitted):
    codec, _ = fitted
    with pytest.raises(TypeError, match="cache must be a KVCache"): codec.encode([torch.zeros(2, 3, 4)])
    with pytest.raises(ValueError, match="fit on"): codec.encode(smooth_cache(L=3))
    with pytest.raises(ValueError, match="call fit"): CacheGenCodec().encode(smooth_cache())
    with pytest.raises(ValueError, match=r"values\[0\] must have shape"):
        KVCache([torch.zeros(2, 3, 4)], [torch.zeros(2, 4, 4)])
    with pytest.raises(TypeError, match="dtype"): codec.encode(KVCache([torch.zeros(2, 3, 4, dtype=torch.float64)] * 2, [torch.zeros(2, 3, 4, dtype=torch.float64)] * 2))
    with pytest.raises(ValueError, match="group_size"): CacheGenCodec(group_size=0)


# ---------------------------------------------------------------- fuzzing the decoder

def decode_or_corrupt(codec, data):
    try:
        out = codec.decode(data)
    except CorruptStreamError as e:
        return e
    assert isinstance(out, KVCache)
    assert all(torch.isfinite(x.float()).all() for x in out.keys + out.values)
    return out


@pytest.fixture(scope="module")
def stream(fitted):
    codec, _ = fitted
    return codec.encode(smooth_cache(seed=11, T=40))


FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.data())
def test_truncated_streams_raise(fitted, stream, data):
    codec, _ = fitted
    cut = data.draw(st.integers(0, len(stream) - 1))
    err = decode_or_corrupt(codec, stream[:cut])
    assert isinstance(err, CorruptStreamError)


@FUZZ
@given(st.data())
def test_bit_flips_raise_naming_the_chunk(fitted, stream, data):
    codec, _ = fitted
    pos = data.draw(st.integers(0, 8 * len(stream) - 1))
    damaged = bytearray(stream); damaged[pos // 8] ^= 1 << (pos % 8)
    err = decode_or_corrupt(codec, bytes(damaged))
    assert isinstance(err, CorruptStreamError)  # CRC32 detects every single-bit error
    header_len = HEAD + 2 * 2 + 4 * 3 + 4  # fixed part, bins, 3 chunk lengths, CRC
    if pos // 8 >= header_len: assert err.chunk is not None and f"chunk {err.chunk}" in str(err)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_raise(fitted, blob):
    codec, _ = fitted
    for data in (blob, b"CGKV" + blob, b"CGKV\x01" + blob):
        assert isinstance(decode_or_corrupt(codec, data), CorruptStreamError)


@FUZZ
@given(st.data())
def test_forged_headers_decode_or_raise(data):
    """Header fields changed and the header CRC recomputed: the decoder must still never return garbage."""
    codec = CacheGenCodec(tables="inline", chunk_tokens=8)
    s = bytearray(codec.encode(smooth_cache(seed=12, T=20)))
    end = HEAD + 4 + 4 * 3  # fixed part, bins of 2 layers, 3 chunk lengths
    for _ in range(data.draw(st.integers(1, 4))):
        s[data.draw(st.integers(4, end - 1))] = data.draw(st.integers(0, 255))
    s[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(s[:end])))
    decode_or_corrupt(codec, bytes(s))


@FUZZ
@given(st.data())
def test_forged_chunks_decode_or_raise(data):
    """Chunk bytes changed and the chunk CRC recomputed (inline tables): valid cache or CorruptStreamError."""
    codec = CacheGenCodec(tables="inline", chunk_tokens=20)
    s = bytearray(codec.encode(smooth_cache(seed=13, T=20)))
    start = HEAD + 4 + 4 + 4  # fixed part, bins, 1 chunk length, header CRC
    for _ in range(data.draw(st.integers(1, 6))):
        s[data.draw(st.integers(start, len(s) - 5))] = data.draw(st.integers(0, 255))
    s[-4:] = struct.pack("<I", zlib.crc32(bytes(s[start:-4])))
    decode_or_corrupt(codec, bytes(s))


# ---------------------------------------------------------------- peers: transformers and zstandard

def test_continuation_from_decoded_cache_matches_full_forward():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()
    ids = torch.randint(0, 50, (40,))
    cache = kv_cache_of(model, ids[:30])
    assert cache.n_layers == 2 and cache.shape == (4, 30, 8)
    with torch.no_grad():
        cont = model(ids[None, 30:], cache=kv_cache_into(model, cache)).logits
        full = model(ids[None]).logits
    torch.testing.assert_close(cont, full[:, 30:], rtol=1e-4, atol=1e-5)
    # a decoded cache (32 bins everywhere) moves the perplexity of the continuation only slightly
    codec = CacheGenCodec(3, chunk_tokens=16).fit([cache])
    exact = continuation_perplexity(model, kv_cache_of(model, ids[:29]), ids[29:])
    decoded = continuation_perplexity(model, codec.decode(codec.encode(kv_cache_of(model, ids[:29]))), ids[29:])
    assert abs(decoded / exact - 1) < 0.05


def test_zstd_baseline_is_zstandard_on_fp16_bytes():
    c = smooth_cache(seed=6, T=64)
    raw = np.concatenate([x.permute(1, 0, 2).reshape(64, -1).half().numpy().ravel() for x in c.keys + c.values]).tobytes()
    assert fp16_bytes(c) == raw
    bits, recon = zstd_baseline(c, 3)
    assert bits == 8 * len(zstandard.ZstdCompressor(level=3).compress(raw)) / c.numel()
    shuffled = fp16_bytes(c, shuffle=True)
    assert shuffled[: len(raw) // 2] == raw[0::2] and shuffled[len(raw) // 2:] == raw[1::2]
    assert zstandard.ZstdDecompressor().decompress(zstandard.ZstdCompressor(level=19).compress(raw)) == raw


# ---------------------------------------------------------------- streaming

@given(st.lists(st.floats(1e7, 1e10), min_size=1, max_size=6), st.floats(0.05, 2.0))
@settings(max_examples=60, deadline=1000)
def test_plan_picks_the_highest_level_that_fits(bandwidths, slo):
    sizes = np.array([[1e6, 3e6, 9e6]] * len(bandwidths))
    plan = plan_stream(sizes, bandwidths, slo, 1e-4, chunk_tokens=100)
    for i, b in enumerate(bandwidths):
        feasible = [l for l in range(3) if 8 * sizes[i, l] / b <= slo / len(bandwidths)]
        assert plan.levels[i] == (max(feasible) if feasible else -1)
        expected = 8 * sizes[i, plan.levels[i]] / b if feasible else 8 * 4 * 100 / b + 100 * 1e-4
        assert math.isclose(plan.seconds[i], expected, rel_tol=1e-9)
    assert math.isclose(plan.ttft, sum(plan.seconds), rel_tol=1e-9)


def test_capture_kv_matches_the_projections_of_a_bert_encoder():
    from transformers import BertConfig, BertModel
    from alignnb.cachegen import capture_kv, outputs_with_kv
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                                 intermediate_size=64, max_position_embeddings=64)).eval()
    inputs = {"input_ids": torch.randint(0, 50, (1, 12)), "attention_mask": torch.ones(1, 12, dtype=torch.long)}
    cache = capture_kv(model, inputs, n_heads=4)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        for l, layer in enumerate(model.encoder.layer):
            h = out.hidden_states[l]  # (1, T, 32): the input of layer l
            k = layer.attention.self.key(h)[0].reshape(12, 4, 8).permute(1, 0, 2)
            v = layer.attention.self.value(h)[0].reshape(12, 4, 8).permute(1, 0, 2)
            torch.testing.assert_close(cache.keys[l], k)
            torch.testing.assert_close(cache.values[l], v)
    torch.testing.assert_close(outputs_with_kv(model, inputs, cache), out.last_hidden_state[0])
    zeroed = KVCache(cache.keys, [torch.zeros_like(v) for v in cache.values])  # replaced values must reach the output
    assert not torch.allclose(outputs_with_kv(model, inputs, zeroed), out.last_hidden_state[0], atol=1e-3)


# ---------------------------------------------------------------- choosing bins for a quality budget

def test_group_bits_is_the_per_channel_entropy_of_anchors_and_deltas():
    from alignnb.cachegen import group_bits, layer_matrix
    caches = [smooth_cache(seed=s, T=45) for s in range(2)]
    def entropy_bits(columns):  # plain per-column histogram entropy, in total bits
        total = 0.0
        for col in columns.T:
            _, counts = np.unique(col, return_counts=True)
            p = counts / counts.sum()
            total -= (counts * np.log2(p)).sum()
        return total
    for kind, layer, bins in ((0, 0, 16), (1, 1, 6)):
        anchors, deltas = [], []
        for c in caches:
            q, _ = absmax_quantize(layer_matrix((c.keys, c.values)[kind][layer]), bins)
            t = np.arange(q.shape[0]); a = t % 10 == 0
            anchors.append(q[a]); deltas.append(q[~a] - q[(t // 10 * 10)[~a]])
        anchors, deltas = np.concatenate(anchors), np.concatenate(deltas)
        expected = (entropy_bits(anchors) + entropy_bits(deltas)) / (anchors.size + deltas.size)
        assert group_bits(caches, kind, layer, bins) == pytest.approx(expected, rel=1e-12)


def test_calibrate_bins_on_an_additive_loss_is_near_the_exhaustive_optimum():
    import itertools
    from alignnb.cachegen import calibrate_bins, group_bits
    caches = [smooth_cache(L=2, seed=s, T=50) for s in range(2)]
    ladder, weights = (16, 8, 6, 4), {(0, 0): 4.0, (0, 1): 1.0, (1, 0): 2.0, (1, 1): 0.5}
    loss = lambda kb, vb: sum(weights[kind, l] * (1 / b) ** 2 for kind, bs in enumerate((kb, vb)) for l, b in enumerate(bs))
    bits = lambda kb, vb: sum(group_bits(caches, kind, l, b) for kind, bs in enumerate((kb, vb)) for l, b in enumerate(bs)) / 4
    configs = [((a, b), (c, d)) for a, b, c, d in itertools.product(ladder, repeat=4)]
    for budget in (0.05, 0.1, 0.2, 0.4):
        result = calibrate_bins(caches, loss, budget, ladder=ladder, start=((16, 16), (16, 16)))
        assert result.loss <= budget and result.loss == pytest.approx(loss(*result.level_config))
        for kind in (0, 1):  # locally maximal: one more notch anywhere breaks the budget
            for l in range(2):
                b = result.level_config[kind][l]
                if b != ladder[-1]:
                    trial = [list(x) for x in result.level_config]; trial[kind][l] = ladder[ladder.index(b) + 1]
                    assert loss(*trial) > budget
        best = min(bits(*c) for c in configs if loss(*c) <= budget)
        assert bits(*result.level_config) <= 1.1 * best + 1e-12
        assert result.history[-1][3] == pytest.approx(bits(*result.level_config))


def test_calibrate_bins_rejects_bad_input():
    from alignnb.cachegen import calibrate_bins
    caches = [smooth_cache(seed=0)]
    loss = lambda kb, vb: 0.0
    with pytest.raises(ValueError, match="budget"): calibrate_bins(caches, loss, float("nan"))
    with pytest.raises(TypeError, match="loss must be callable"): calibrate_bins(caches, 0.1, 1.0)
    with pytest.raises(ValueError, match="start must be"): calibrate_bins(caches, loss, 1.0, start=((32,), (32,)))
    with pytest.raises(ValueError, match="already exceed"): calibrate_bins(caches, lambda kb, vb: 1.0, 0.5)
    with pytest.raises(TypeError, match="KVCache"): calibrate_bins(["not a cache"], loss, 1.0)
    with pytest.raises(ValueError, match="must be finite"): calibrate_bins(caches, lambda kb, vb: float("nan"), 1.0)
    with pytest.raises(ValueError, match="released default"): calibrate_bins(caches, loss, 1.0, ladder=(12, 8))
    with pytest.raises(ValueError, match="layers/heads/head_dim"): calibrate_bins([caches[0], smooth_cache(L=3)], loss, 1.0)
    assert calibrate_bins(caches, loss, np.float32(1.0)).loss == 0.0


def test_mean_kl_matches_scipy():
    from scipy.stats import entropy
    from alignnb.cachegen import mean_kl
    g = torch.Generator().manual_seed(0)
    logp, logq = (torch.log_softmax(3 * torch.randn(5, 11, generator=g, dtype=torch.float64), -1) for _ in range(2))
    expected = np.mean([entropy(p, q) for p, q in zip(logp.exp().numpy(), logq.exp().numpy())])
    assert mean_kl(logp, logq) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="same shape"): mean_kl(logp, logq[:3])
    masked = logp.clone(); masked[:, 0] = -float("inf")  # a token p never predicts contributes 0 log 0 = 0
    masked = torch.log_softmax(masked, -1)
    expected = np.mean([entropy(p, q) for p, q in zip(masked.exp().numpy(), logq.exp().numpy())])
    assert mean_kl(masked, logq) == pytest.approx(expected, rel=1e-12)
