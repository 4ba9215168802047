"""CacheGen streaming for real: the multi-level frame format (CRC, truncation, brute-force and hypothesis
corruption), the loopback server and client (the received cache equals the offline decode; corrupted and truncated
transfers raise `CorruptStreamError`), the adaptive rule against brute force and against `plan_stream`, and the
payloads against the baselines and Hugging Face's own cache."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from alignnb.cachegen import (INT8, TEXT, ZSTD, AdaptivePolicy, BandwidthTrace, CacheGenCodec, ContextLayout,
                              ContextServer, CorruptStreamError, FRAME_HEADER_BYTES, KVCache, absmax_baseline,
                              cache_slice, check_frame, constant_trace, decode_mixed_stream, fetch_context,
                              fit_level_codecs, kv_cache_of, load_long_lm, mixed_stream, pack_frame, pack_layout,
                              plan_stream, random_walk_trace, read_frame_header, recompute_chunk, step_trace,
                              store_context, unpack_layout, held_out_long_documents, fit_long_documents)

CTX, CHUNK = 512, 128  # a short context keeps the tests fast: 4 chunks


@pytest.fixture(scope="module")
def served():
    torch.set_num_threads(1)
    model, tok = load_long_lm()
    fit = [kv_cache_of(model, x[:CTX]) for x in fit_long_documents(tok, 2)]
    codecs = fit_level_codecs(fit, chunk_tokens=CHUNK)
    doc = held_out_long_documents(tok)[0]
    cache = kv_cache_of(model, doc[:CTX])
    return model, codecs, doc, cache, store_context(cache, doc[:CTX], codecs)


def assert_same(a: KVCache, b: KVCache):
    for x, y in zip(a.keys + a.values, b.keys + b.values): assert torch.equal(x, y)


# ---------------------------------------------------------------- loopback

@pytest.mark.parametrize("policy", [AdaptivePolicy(0.2), 3, 1, TEXT, INT8, ZSTD])
def test_loopback_equals_offline_decode(served, policy):
    model, codecs, doc, cache, stored = served
    with ContextServer(stored, constant_trace(80e6)) as server:
        r = fetch_context(server.port, codecs, model, policy, doc[CTX:CTX + 1], timeout=30)
    assert len(r.kinds) == 4 and server.errors == []
    offline, kinds = decode_mixed_stream(mixed_stream(stored, r.kinds), codecs, model)
    assert kinds == r.kinds
    assert_same(offline, r.cache)
    # the first token is the model's greedy choice on the received cache
    with torch.no_grad():
        from alignnb.cachegen import kv_cache_into
        logits = model(doc[None, CTX:CTX + 1], cache=kv_cache_into(model, r.cache)).logits[0, -1]
    assert r.first_token == int(logits.argmax())


def test_loopback_level_equals_whole_cache_codec(served):
    "Independent of the frame code: each chunk at level 3 equals the whole-cache codec's decode of that chunk."
    model, codecs, doc, cache, stored = served
    with ContextServer(stored, random_walk_trace(50e6, 2.0, seed=3)) as server:
        r = fetch_context(server.port, codecs, model, 3, doc[CTX:CTX + 1], timeout=30)
    whole = codecs[3]
    assert_same(whole.decode(whole.encode(cache)), r.cache)


@pytest.mark.parametrize("fault", [("flip", 0), ("flip", 2), ("truncate", 1), ("truncate", 3)])
def test_corrupted_or_truncated_transfer_raises(served, fault):
    model, codecs, doc, cache, stored = served
    with ContextServer(stored, constant_trace(80e6), fault=fault) as server:
        with pytest.raises(CorruptStreamError) as e:
            fetch_context(server.port, codecs, model, 2, doc[CTX:CTX + 1], timeout=30)
    assert e.value.chunk == fault[1]


def test_text_recompute_matches_hf_cache(served):
    "A text chunk after the exact prefix is the cache Hugging Face builds over the whole prefix."
    model, codecs, doc, cache, stored = served
    part = recompute_chunk(model, cache_slice(cache, 0, CHUNK), doc[CHUNK:2 * CHUNK])
    for a, b in zip(part.keys + part.values, cache.keys + cache.values):
        torch.testing.assert_close(a, b[:, CHUNK:2 * CHUNK], atol=1e-4, rtol=1e-4)


def test_payloads_match_baselines(served):
    model, codecs, doc, cache, stored = served
    int8 = decode_mixed_stream(mixed_stream(stored, [INT8] * 4), codecs)[0]
    for a, b in zip(int8.keys + int8.values, absmax_baseline(cache, 8)[1].keys + absmax_baseline(cache, 8)[1].values):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    z = decode_mixed_stream(mixed_stream(stored, [ZSTD] * 4), codecs)[0]
    for a, b in zip(z.keys + z.values, cache.keys + cache.values): assert torch.equal(a, b.half().float())


def test_mixed_stream_errors(served):
    model, codecs, doc, cache, stored = served
    data = mixed_stream(stored, [TEXT, 1, 2, 3])
    with pytest.raises(ValueError, match="model"): decode_mixed_stream(data, codecs, None)
    with pytest.raises(CorruptStreamError): decode_mixed_stream(data + b"\0", codecs, model)
    with pytest.raises(CorruptStreamError): decode_mixed_stream(data[:-1], codecs, model)
    # frames out of order: chunk 1's frame where chunk 0's is due
    swapped = pack_layout(stored.layout) + stored.frames[1, 1] + stored.frames[0, 1] + stored.frames[2, 1] \
        + stored.frames[3, 1]
    with pytest.raises(CorruptStreamError, match="chunk 1 where chunk 0"): decode_mixed_stream(swapped, codecs, model)
    with pytest.raises(ValueError, match="kinds"): mixed_stream(stored, [1, 2])
    # a level the receiver has no codec for
    with pytest.raises(CorruptStreamError, match="no codec"):
        decode_mixed_stream(mixed_stream(stored, [3, 3, 3, 3]), {1: codecs[1]}, model)


def test_brute_force_single_bit_flips(served):
    "Every byte of a whole small stream (layout + 4 text frames of 2 tokens), lowest and highest bit flipped, is caught."
    model, codecs, doc, cache, stored = served
    tiny_codecs = fit_level_codecs([cache_slice(cache, 0, 8)], chunk_tokens=2, levels=(1,))
    tiny = store_context(cache_slice(cache, 0, 8), doc[:8], tiny_codecs, kinds=(TEXT,))
    data = mixed_stream(tiny, [TEXT] * 4)
    decode_mixed_stream(data, tiny_codecs, model)  # the undamaged stream decodes
    for pos in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            with pytest.raises(CorruptStreamError): decode_mixed_stream(bytes(bad), tiny_codecs, model)


# ---------------------------------------------------------------- the frame and layout, by hypothesis

@settings(max_examples=200, deadline=None)
@given(st.integers(0, 65534), st.sampled_from([TEXT, 1, 2, 3, INT8, ZSTD]), st.integers(0, 65535),
       st.binary(min_size=0, max_size=300), st.data())
def test_frame_round_trip_and_any_flip(index, kind, n, payload, data):
    frame = pack_frame(index, kind, n, payload)
    head, body = frame[:FRAME_HEADER_BYTES], frame[FRAME_HEADER_BYTES:]
    assert read_frame_header(head, index)[:4] == (index, kind, n, len(payload))
    check_frame(head, body, index)
    pos, bit = data.draw(st.integers(0, len(frame) - 1)), data.draw(st.integers(0, 7))
    bad = bytearray(frame)
    bad[pos] ^= 1 << bit
    with pytest.raises(CorruptStreamError):
        h = bytes(bad[:FRAME_HEADER_BYTES])
        length = read_frame_header(h, index)[3]
        check_frame(h, bytes(bad[FRAME_HEADER_BYTES:FRAME_HEADER_BYTES + length]), index)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 64), st.integers(1, 300), st.integers(8, 512),
       st.data())
def test_layout_round_trip_and_truncation(L, H, D, T, chunk, data):
    N = -(-T // chunk)
    kinds = tuple(data.draw(st.lists(st.sampled_from([TEXT, 1, 2, 3, INT8, ZSTD]), min_size=1, max_size=6,
                                     unique=True)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    sizes = np.random.default_rng(seed).integers(0, 2**32, (N, len(kinds)))
    blob = pack_layout(ContextLayout(L, H, D, T, chunk, kinds, sizes))
    layout, used = unpack_layout(blob + b"tail")
    assert used == len(blob) and layout.kinds == kinds and (layout.sizes == sizes).all()
    assert (layout.n_layers, layout.n_heads, layout.head_dim, layout.n_tokens) == (L, H, D, T)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(CorruptStreamError): unpack_layout(blob[:cut])


# ---------------------------------------------------------------- the adaptive rule and the traces

@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 10**6)), min_size=1,
                max_size=8), st.floats(1e4, 1e10), st.floats(1e-3, 10.0))
def test_adaptive_rule_brute_force_and_plan_stream(rows, bandwidth, slo):
    N = len(rows)
    sizes = np.array([[10, *r] for r in rows])
    layout = ContextLayout(1, 1, 2, N * 4, 4, (TEXT, 1, 2, 3), sizes)
    pol = AdaptivePolicy(slo)
    ours = [pol.choose(layout, i, bandwidth) for i in range(N)]
    brute = [max([l for l in (1, 2, 3) if 8 * sizes[i, l] / bandwidth <= slo / N], default=TEXT) for i in range(N)]
    assert ours == brute
    plan = plan_stream(sizes[:, 1:], np.full(N, bandwidth), slo, 1e-4)
    assert [l - 1 if l else -1 for l in ours] == plan.levels.tolist()


def test_trace_shapes_and_errors():
    s = step_trace(40e6, 3e6, 0.08)
    assert (s.rate(0.0), s.rate(0.0799), s.rate(0.08), s.rate(5.0)) == (40e6, 40e6, 3e6, 3e6)
    w = random_walk_trace(40e6, seconds=1.0, step=0.1, low=1e6, high=1e8, seed=1)
    assert len(w.rates) == 10 and w.rates[0] == pytest.approx(40e6) and (w.rates >= 1e6).all() and (w.rates <= 1e8).all()
    with pytest.raises(ValueError, match="rates"): constant_trace(0.0)
    with pytest.raises(ValueError, match="start at 0"): BandwidthTrace([0.5], [1e6])
    with pytest.raises(ValueError, match="one length"): BandwidthTrace([0.0, 1.0], [1e6])
    with pytest.raises(ValueError, match="fault"): ContextServer(None, s, fault=("drop", 1))
    with pytest.raises(ValueError, match="kind"): pack_frame(0, 5, 1, b"")
