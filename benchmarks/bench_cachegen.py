"""CacheGen codec throughput beside zstd on the same KV bytes.

Encode and decode speed in MB of fp16 KV per second for CacheGen (profiled and inline tables) and zstd levels 3 and
19 (fp16 bytes, byte-plane shuffled), for chunks of 256 and 1500 tokens; sizes in bits per element; the range
coder's overhead over the ideal code length; the inline tables' share of the stream. Every decode is checked:
CacheGen against the quantiser's reconstruction bit for bit, zstd against its input bytes.

--quick (used by `make test`, < 60 s): a synthetic cache with token-wise locality (2 layers, 384 channels, 1500
tokens). Full run: all-MiniLM-L6-v2 caches of Python documentation, concatenated along tokens to 3000 tokens.

Size at equal quality (the target "3x smaller than 8-bit at < 1% perplexity"): the package's small causal LM,
caches of held-out documents, continuation perplexity from the decoded cache (`small_lm_experiment`; 4 fit and 8
held-out documents with --quick, otherwise 12 fit documents and all 12 validation documents long enough), for the
released bins and for bins calibrated on the fit documents (`calibrate_bins`, KL budget 0.002 nats per token).
The claims, with intervals over the held-out documents, are `alignnb-reproduce cachegen`'s.

Decode speed in M symbols/s (one coded symbol per KV element: an anchor or a delta), one thread, with a cProfile
breakdown of one profiled-table decode (which share of the time the range coder's calls take, which the NumPy
reassembly and which the Python around them), measured before any optimisation; and the range decoder alone on the
first chunk, one call per table row (the codec's path) against one call per (kind, layer) with a `Categorical` model
family and per-symbol probabilities (`family_decode`: same words, same symbols; measured slower, since the family
builds a lazy model for every symbol, so the codec keeps the per-row calls). The end-to-end time to first
token over a shaped loopback socket is `alignnb.cachegen.end_to_end` (page 06_end_to_end).
"""
import argparse, json, os, platform, time
from pathlib import Path

import numpy as np
import torch
import zstandard

from alignnb.cachegen import (CacheGenCodec, KVCache, fp16_bytes, quantize_dequantize, absmax_baseline, small_lm_experiment,
                              SmallLMExperimentConfig)


def synthetic_cache(n_layers: int, n_tokens: int, seed: int) -> KVCache:
    "Random walks along tokens (locality) with per-channel offsets and a few outlier channels; 12 heads x 32."
    rng = np.random.default_rng(seed)
    def one():
        x = np.cumsum(rng.normal(0, 0.15, (12, n_tokens, 32)), axis=1) * 0.3 + rng.normal(0, 1, (12, 1, 32))
        x += rng.normal(0, 0.3, x.shape)  # token-level noise on top of the smooth part
        x[:, :, :2] *= 6  # outlier channels set the per-token absmax
        return torch.tensor(x, dtype=torch.float32)
    return KVCache([one() for _ in range(n_layers)], [one() for _ in range(n_layers)])


def minilm_cache(n_docs: int, offset: int) -> KVCache:
    "MiniLM caches of documents offset..offset+n_docs (of the first 16), concatenated along tokens."
    from alignnb.cachegen import minilm_caches
    _, caches = minilm_caches(16)  # one memoised capture for the fit and the test documents
    cs = caches[offset:offset + n_docs]
    return KVCache([torch.cat([c.keys[l] for c in cs], 1) for l in range(cs[0].n_layers)],
                   [torch.cat([c.values[l] for c in cs], 1) for l in range(cs[0].n_layers)])


def timed(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t)
    return best, out


def decode_profile(codec: CacheGenCodec, data: bytes, top: int = 6) -> dict:
    "cProfile of one decode: share of the time per function (tottime), the range decoder's calls first."
    import cProfile, pstats
    prof = cProfile.Profile()
    prof.enable(); codec.decode(data); prof.disable()
    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    total = sum(v[2] for v in st.values())
    shares = sorted(((f"{k[2]} ({Path(k[0]).name})", v[2] / total, v[1]) for k, v in st.items()), key=lambda r: -r[1])
    return {"total_s": total, "top": [dict(function=f, share=round(sh, 3), calls=n) for f, sh, n in shares[:top]]}


def family_decode(codec: CacheGenCodec, cache: KVCache, repeat: int) -> dict:
    """Decode the first chunk's symbols of every (kind, layer) two ways: one `RangeDecoder.decode` call per table row
    (the codec's path) and one call per (kind, layer) with a `Categorical` model family and a (symbols, alphabet)
    probability array. Both read the same words (the family encoder is checked to write them bit for bit)."""
    import constriction
    from alignnb.cachegen.codec import anchor_delta, quantize_cache
    family = constriction.stream.model.Categorical(perfect=False)
    quantized = quantize_cache(cache, *codec.bins_for(cache.n_layers))
    bins = list(codec.bins_for(cache.n_layers)[0]) + list(codec.bins_for(cache.n_layers)[1])
    jobs, n = [], 0
    for j, ((q, _), b) in enumerate(zip(quantized, bins)):
        for sym, freq, models in zip(anchor_delta(q[:codec.chunk_tokens], codec.group_size, b // 2 - 1),
                                     codec.frequencies[j], codec._profiled_models()[j]):
            enc = constriction.stream.queue.RangeEncoder()
            for ch, m in enumerate(models): enc.encode(np.ascontiguousarray(sym[:, ch], dtype=np.int32), m)
            probs = np.repeat(freq.astype(np.float64), sym.shape[0], axis=0)  # channel-major, as encoded
            fam = constriction.stream.queue.RangeEncoder()
            fam.encode(np.ascontiguousarray(sym.T.ravel(), dtype=np.int32), family, probs)
            words = enc.get_compressed()
            jobs.append((words, models, probs, sym, np.array_equal(words, fam.get_compressed())))
            n += sym.size
    def per_row(): return [_rows(w, ms, s.shape[0]) for w, ms, _, s, _ in jobs]
    def by_family(): return [constriction.stream.queue.RangeDecoder(w).decode(family, p).reshape(s.shape[1], -1).T
                             for w, _, p, s, _ in jobs]
    t_row, a = timed(per_row, repeat)
    t_fam, b = timed(by_family, repeat)
    same = all(np.array_equal(x, s) and np.array_equal(y, s) for x, y, (_, _, _, s, _) in zip(a, b, jobs))
    return dict(symbols=n, per_row_Msym_s=n / t_row / 1e6, family_Msym_s=n / t_fam / 1e6,
                decoded_equal=bool(same), words_equal=all(j[4] for j in jobs))


def _rows(words, models, rows: int) -> np.ndarray:  # (rows, channels)
    import constriction
    dec = constriction.stream.queue.RangeDecoder(words)
    return np.stack([dec.decode(m, rows) for m in models], axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # no weight-loading bar in the printed table
    repeat = 1 if args.quick else 3
    if args.quick: fit, test = [synthetic_cache(2, 1500, s) for s in (1, 2)], synthetic_cache(2, 1500, 0)
    else:
        fit = [minilm_cache(8, 0)]
        test = minilm_cache(8, 8)
    mb = test.numel() * 2 / 1e6  # fp16 megabytes
    rows, checks = [], {}
    bits8 = absmax_baseline(test, 8)[0]
    for chunk in (256, 1500):
        for tables in ("profiled", "inline"):
            codec = CacheGenCodec(chunk_tokens=chunk, tables=tables)
            if tables == "profiled": codec.fit(fit)
            codec._profiled_models() if tables == "profiled" else None  # build the coder models outside the timing
            t_enc, (data, stats) = timed(lambda: codec.encode_with_stats(test), repeat)
            t_dec, out = timed(lambda: codec.decode(data), repeat)
            ref = quantize_dequantize(test, *codec.bins_for(test.n_layers))
            ok = all(torch.equal(a, b) for a, b in zip(out.keys + out.values, ref.keys + ref.values))
            checks[f"cachegen chunk {chunk} {tables} exact"] = ok
            bits = 8 * len(data) / test.numel()
            if tables == "profiled" and chunk == 256:
                profile, family = decode_profile(codec, data), family_decode(codec, test, repeat)
                checks["family decode = per-row decode"] = family["decoded_equal"] and family["words_equal"]
            rows.append(dict(method=f"CacheGen {tables}", chunk=chunk, bits=bits, ratio_vs_8bit=bits8 / bits,
                             encode_MBps=mb / t_enc, decode_MBps=mb / t_dec, decode_Msym_s=test.numel() / t_dec / 1e6,
                             coder_overhead_pct=100 * (8 * stats["coded_bytes"] / stats["ideal_bits"] - 1),
                             table_share=stats["table_bytes"] / stats["total_bytes"]))
    for shuffle in (False, True):
        raw = fp16_bytes(test, shuffle)
        for level in (3, 19):
            comp = zstandard.ZstdCompressor(level=level)
            t_enc, data = timed(lambda: comp.compress(raw), repeat)
            t_dec, back = timed(lambda: zstandard.ZstdDecompressor().decompress(data), repeat)
            checks[f"zstd-{level}{' shuffled' if shuffle else ''} lossless"] = back == raw
            bits = 8 * len(data) / test.numel()
            rows.append(dict(method=f"zstd-{level}{' shuffled' if shuffle else ''}", chunk=None, bits=bits, ratio_vs_8bit=bits8 / bits,
                             encode_MBps=mb / t_enc, decode_MBps=mb / t_dec, coder_overhead_pct=None, table_share=None))
    zstd19 = min(r["encode_MBps"] for r in rows if r["method"].startswith("zstd-19"))
    slowest_decode = min(r["decode_MBps"] for r in rows if r["method"] == "CacheGen profiled")
    summary = {"decode >= zstd-19 compress": slowest_decode >= zstd19,
               "coder overhead < 1%": all(r["coder_overhead_pct"] < 1 for r in rows if r["coder_overhead_pct"] is not None),
               "all decodes verified": all(checks.values())}
    print(f"KV: {test.n_layers} layers x {test.shape} ({mb:.1f} MB fp16), 8-bit absmax = {bits8:.3f} bits/element")
    print(f"{'method':22s} {'chunk':>5s} {'bits':>6s} {'x 8-bit':>7s} {'enc MB/s':>9s} {'dec MB/s':>9s} {'coder %':>8s} {'tables':>7s}")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    for r in rows:
        print(f"{r['method']:22s} {fmt(r['chunk'], 'd'):>5s} {r['bits']:6.3f} {r['ratio_vs_8bit']:7.2f} {r['encode_MBps']:9.2f} "
              f"{r['decode_MBps']:9.2f} {fmt(r['coder_overhead_pct'], '.3f'):>8s} {fmt(r['table_share'], '.2f'):>7s}")
    lm = small_lm_experiment(SmallLMExperimentConfig.quick() if args.quick else SmallLMExperimentConfig.full())
    quality = {}
    if lm is not None:
        quality = {n: lm.rows[n] for n in ("CacheGen", "CacheGen L1", "CacheGen calibrated", "CacheGen calibrated, no delta",
                                              "absmax 4-bit", "KIVI 2-bit", "absmax 8-bit")}
        best = lm.rows["CacheGen calibrated"]
        summary["calibrated >= 3x smaller than 8-bit at < 1% perplexity"] = best["ratio_vs_8bit"] >= 3 and best["quality"] < 0.01
    print(f"CacheGen decode (slowest) / zstd-19 compress: {slowest_decode / zstd19:.1f}x")
    print("decode M symbols/s (one thread): " + ", ".join(f"{r['method']} chunk {r['chunk']}: {r['decode_Msym_s']:.1f}"
                                                       for r in rows if "decode_Msym_s" in r))
    print(f"decode profile (profiled tables, chunk 256, {profile['total_s']:.3f} s under cProfile):")
    for r in profile["top"]: print(f"  {r['share']:6.1%}  {r['calls']:7d} calls  {r['function']}")
    print(f"range decoder alone, first 256-token chunk ({family['symbols']} symbols): one call per table row "
          f"{family['per_row_Msym_s']:.1f} M symbols/s, one call per (kind, layer) with a Categorical family "
          f"{family['family_Msym_s']:.1f} M symbols/s (same words: {family['words_equal']}, "
          f"same symbols: {family['decoded_equal']})")
    if lm is not None:
        print(f"\nSmall LM, {lm.documents} held-out documents: size against continuation perplexity "
              f"(calibrated bins: keys {lm.calibration.key_bins}, values {lm.calibration.value_bins})")
        print(f"{'method':30s} {'bits':>6s} {'x 8-bit':>7s} {'ppl change %':>12s} {'KL nats':>8s}")
        for n, r in quality.items():
            print(f"{n:30s} {r['bits']:6.3f} {r['ratio_vs_8bit']:7.2f} {100 * r['quality']:12.3f} {fmt(r.get('kl'), '.5f'):>8s}")
    else: print("small LM not available (data_samples/lm): size at quality not measured")
    print(summary)
    out = Path(__file__).parent / "results"; out.mkdir(exist_ok=True)
    (out / "bench_cachegen.json").write_text(json.dumps(dict(quick=args.quick, machine=platform.machine(), cpus=os.cpu_count(),
                                                            data="synthetic" if args.quick else "all-MiniLM-L6-v2",
                                                            shape=[test.n_layers, *test.shape], bits_8bit=bits8,
                                                            rows=rows, checks=checks, summary=summary, decode_profile=profile, family_decode=family,
                                                            small_lm=quality, calibrated_bins=None if lm is None else lm.calibration.level_config), indent=2))
    if not all(checks.values()): raise SystemExit("a decode did not verify")


if __name__ == "__main__":
    main()
