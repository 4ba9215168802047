"""CacheGen's claims and the figures they are computed from: verdicts from synthetic per-document results, the
per-document comparison, KIVI's fp16 residual and the honesty of the small-LM presets."""
import numpy as np
import pandas as pd
import pytest
import torch

from alignnb.cachegen import (BinCalibration, CacheGenCodec, KVCache, SmallLMExperimentConfig, SmallLMResult,
                              ablation, compare_codecs, compare_per_document, kivi_baseline, mean_comparison)
from alignnb.cachegen.experiments import _quality_claim, _size_claim, _size_ratio, _small_lm_documents


def synthetic_result(cachegen_bits, ppl_increase, bits8=8.125) -> SmallLMResult:
    "A small-LM result whose calibrated codec took `cachegen_bits` per document and raised perplexity by these."
    n = len(cachegen_bits)
    doc = lambda bits, q: {"bits": np.asarray(bits, float), "rel_error": np.zeros(n),
                           "quality": np.asarray(q, float), "kl": np.zeros(n)}
    per = {"absmax 8-bit": doc([bits8] * n, np.zeros(n)), "CacheGen calibrated": doc(cachegen_bits, ppl_increase)}
    calibration = BinCalibration((8,) * 4, (6,) * 4, 0.001, [], 1)
    return SmallLMResult(mean_comparison(per), per, 30.0, n, calibration)


def test_size_ratio_is_the_ratio_of_total_sizes():
    sizes = np.array([[8.0, 2.0], [8.0, 4.0]])
    assert _size_ratio(sizes) == pytest.approx(16 / 6)  # not the mean of the ratios, 3
    lm = synthetic_result([2.0, 4.0], [0.0, 0.0], bits8=8.0)
    assert _size_claim(lm).estimate == pytest.approx(16 / 6)
    assert lm.rows["CacheGen calibrated"]["ratio_vs_8bit"] == pytest.approx(16 / 6)


@pytest.mark.parametrize("centre, expected", [(2.0, "held"), (2.32, "not resolved"), (2.6, "not held")])
def test_size_claim_verdict_follows_the_documents(centre, expected):
    # 8.125 / 2.0 = 4.06x: held; 8.125 / 2.32 = 3.50x: straddles 3.5; 8.125 / 2.6 = 3.13x: not held
    rng = np.random.default_rng(0)
    bits = centre + rng.normal(0, 0.03, 12)
    claim = _size_claim(synthetic_result(bits, np.zeros(12)))
    assert claim.verdict == expected
    assert claim.threshold == 3.5 and claim.direction == "above"
    assert claim.interval == "bootstrap over 12 held-out documents" and claim.low < claim.estimate < claim.high


def test_size_claim_interval_widens_with_document_spread():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, 12)
    narrow, wide = (_size_claim(synthetic_result(2.2 + s * noise, np.zeros(12))) for s in (0.01, 0.2))
    assert wide.high - wide.low > 5 * (narrow.high - narrow.low)


@pytest.mark.parametrize("mean, spread, expected", [(0.002, 0.003, "held"), (0.009, 0.01, "not resolved"),
                                                    (0.03, 0.003, "not held")])
def test_quality_claim_bounds_the_perplexity_increase_at_one_percent(mean, spread, expected):
    rng = np.random.default_rng(2)
    increase = mean + spread * rng.standard_normal(12)
    claim = _quality_claim(synthetic_result(np.full(12, 2.2), increase))
    assert claim.verdict == expected
    assert claim.estimate == pytest.approx(100 * increase.mean())  # in percent, against 1%
    assert claim.threshold == 1.0 and claim.direction == "below"


def test_a_good_size_does_not_rescue_a_bad_quality():
    from alignnb.core import Result
    lm = synthetic_result(np.full(12, 1.5) + np.linspace(0, 0.01, 12), np.full(12, 0.05) + np.linspace(0, 1e-3, 12))
    result = Result("cachegen", "c", "p", claims=[_size_claim(lm), _quality_claim(lm)])
    assert [c.verdict for c in result.claims] == ["held", "not held"] and result.verdict == "not held"


def smooth_cache(T=96, seed=0, L=2, H=2, D=16):
    rng = np.random.default_rng(seed)
    walk = lambda: torch.tensor(np.cumsum(rng.normal(0, 0.3, (H, T, D)), 1) + rng.normal(0, 2, (H, 1, D)),
                                dtype=torch.float32)
    return KVCache([walk() for _ in range(L)], [walk() for _ in range(L)])


def test_compare_per_document_keeps_each_document_and_each_measure():
    caches = [smooth_cache(seed=s) for s in range(3)]
    codec = CacheGenCodec(chunk_tokens=32).fit(caches[:1])
    seen = []
    def measures(i, r):
        seen.append(i)
        return {"quality": float(i), "kl": 10.0 + i}
    per = compare_per_document(caches, {"CacheGen": codec}, measures, zstd_levels=(3,))
    assert per["CacheGen"]["bits"].shape == (3,)
    np.testing.assert_array_equal(per["CacheGen"]["quality"], [0, 1, 2])
    np.testing.assert_array_equal(per["KIVI 2-bit"]["kl"], [10, 11, 12])
    np.testing.assert_array_equal(per["zstd-3"]["kl"], per["fp16"]["kl"])  # the same fp16 reconstruction
    assert len(seen) == 3 * (len(per) - 2)  # every method but the two zstd rows measured on each document
    rows = mean_comparison(per)
    assert rows["CacheGen"]["ratio_vs_8bit"] == pytest.approx(per["absmax 8-bit"]["bits"].sum()
                                                              / per["CacheGen"]["bits"].sum())
    assert compare_codecs(caches, {"CacheGen": codec}, lambda i, r: float(i), (3,))["KIVI 4-bit"]["quality"] == 1.0


def test_kivi_residual_tokens_hold_fp16_values():
    c = smooth_cache(T=80)
    bits, recon = kivi_baseline(c, 2, group=32, residual=16)
    n_q = (80 - 16) // 32 * 32
    for got, exact in zip(recon.keys + recon.values, c.keys + c.values):
        tail = got[:, n_q:]
        assert torch.equal(tail, tail.half().float())  # what the 16 bits billed per element can hold
        assert torch.equal(tail, exact[:, n_q:].half().float())  # exactly the fp16 rounding of the input
        assert not torch.equal(tail, exact[:, n_q:])
    assert bits == pytest.approx((n_q * 32 * 2 + 2 * (n_q * 32 // 32) * 16 + (80 - n_q) * 32 * 16) / (80 * 32))


def test_ablation_says_which_rows_are_entropy_estimates():
    caches = [smooth_cache(seed=s, T=60) for s in range(3)]
    ablated = ablation(caches[:2], caches[2:])
    estimates = [k for k in ablated if "entropy estimate" in k]
    assert len(estimates) == 2 and all("tables per" in k for k in estimates)
    # the coded rows are what the coder wrote: the default codec's coded bytes
    codec = CacheGenCodec().fit(caches[:2])
    coded = 8 * codec.encode_with_stats(caches[2])[1]["coded_bytes"] / caches[2].numel()
    assert ablated["CacheGen"] == pytest.approx(coded)


def test_small_lm_presets_ask_only_for_documents_the_split_has():
    from alignnb.lm import load_small_lm
    _, tok = load_small_lm(device="cpu")
    full = SmallLMExperimentConfig.full()
    fit, test = _small_lm_documents(tok, full)
    assert len(test) == full.n_test and len(fit) == full.n_fit
    with pytest.raises(ValueError, match="validation split has only"):
        _small_lm_documents(tok, SmallLMExperimentConfig(n_test=full.n_test + 1))


def synthetic_socket_run(ttft_8bit, ttft_adaptive, drop_adaptive, drop_l3, slo=0.4):
    "An end-to-end result from hand-written TTFTs: sweep pairs at 4 Mbps (one per repeat) and drop fetches."
    from alignnb.cachegen import EndToEndResult
    rows = [{"method": m, "bandwidth": 4.0, "document": 0, "repeat": r, "ttft": t}
            for r, (a, b) in enumerate(zip(ttft_8bit, ttft_adaptive))
            for m, t in (("8-bit", a), ("CacheGen adaptive", b))]
    drop = [{"method": m, "document": k, "repeat": 0, "ttft": t}
            for k, (a, b) in enumerate(zip(drop_adaptive, drop_l3))
            for m, t in (("CacheGen adaptive", a), ("CacheGen L3", b))]
    return EndToEndResult(pd.DataFrame(rows), pd.DataFrame(drop), pd.DataFrame(drop), slo, 0.0)


def test_ttft_claim_is_the_median_ratio_against_8bit():
    from alignnb.cachegen import ttft_claim
    run = synthetic_socket_run([3.0, 1.0, 0.9], [1.0, 1.0, 0.3], [0.3], [0.3])  # ratios 3, 1, 3: median 3
    claim = ttft_claim(run)
    assert claim.estimate == pytest.approx(3.0) and claim.threshold == 2.7
    assert claim.interval.startswith("bootstrap over 3")


@pytest.mark.parametrize("n, wins, expected", [(2, 2, "not resolved"), (8, 8, "held"), (8, 0, "not held"),
                                               (8, 4, "not resolved")])
def test_slo_claim_counts_pairs_adaptive_meets_and_fixed_misses(n, wins, expected):
    from scipy.stats import binomtest
    from alignnb.cachegen import slo_claim
    # `wins` pairs: adaptive meets, L3 misses; the rest: both meet (a tie is no win)
    run = synthetic_socket_run([1.0], [1.0], [0.3] * n, [0.5] * wins + [0.3] * (n - wins))
    claim = slo_claim(run)
    ci = binomtest(wins, n).proportion_ci(0.95, method="exact")
    assert claim.estimate == pytest.approx(wins / n)
    assert (claim.low, claim.high) == pytest.approx((ci.low, ci.high))
    assert claim.verdict == expected


def test_end_to_end_rejects_unknown_methods():
    from alignnb.cachegen import EndToEndConfig, end_to_end_experiment
    with pytest.raises(ValueError, match="config.methods"):
        end_to_end_experiment(EndToEndConfig(methods=("8-bit", "CacheGen L9")), model=object(), tokenizer=None)
