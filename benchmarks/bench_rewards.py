"""Benchmark alignnb.rewards against scipy, numpy and scikit-learn on the same inputs, in one process.

    python benchmarks/bench_rewards.py --quick     # small sizes (a few seconds)
    python benchmarks/bench_rewards.py             # 10M rewards, 20k prompts, 4000 preference pairs

Cases: the LSC transform (5) vs scipy.special.log_expit; the per-prompt reference reward (8) vs scipy.stats.norm
(fit + ppf, row by row) and numpy.quantile; fitting a linear Bradley-Terry head vs scikit-learn's LogisticRegression
on the same standardised feature differences. Results must agree before they are timed.
Writes benchmarks/results/bench_rewards.json.
"""
import argparse, json, math, time
from pathlib import Path

import numpy as np
import scipy.special
import scipy.stats
import torch
from sklearn.linear_model import LogisticRegression

from alignnb.rewards import BradleyTerryRewardModel, PreferencePairs, log_sigmoid_transform, reference_reward


def median_time(fn, repeats):
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # a shared 2-core machine; the peers run single-threaded too
    n_rewards, n_prompts, k, n_pairs = (200_000, 500, 16, 600) if args.quick else (10_000_000, 20_000, 16, 4000)
    repeats = 3 if args.quick else 5
    rng = np.random.default_rng(0)
    rows = []

    def record(task, size, ours, peers, check):
        t_ours, v_ours = median_time(ours, repeats)
        row = {"task": task, "size": size, "ours_s": t_ours}
        for name, fn in peers.items():
            t, v = median_time(fn, repeats)
            err = check(v_ours, v)
            row |= {f"{name}_s": t, f"{name}_ratio": t / t_ours, f"{name}_max_abs_diff": err}
        rows.append(row)

    r, ref = rng.normal(size=n_rewards) * 5, rng.normal(size=n_rewards)
    rt, reft = torch.from_numpy(r), torch.from_numpy(ref)
    def check_close(tol):
        def check(a, b):
            err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            if err > tol: raise SystemExit(f"results disagree: max abs diff {err} > {tol}")
            return err
        return check
    record("LSC transform log sigma(r - r_ref)", n_rewards, lambda: log_sigmoid_transform(rt, reft).numpy(),
           {"scipy.log_expit": lambda: scipy.special.log_expit(r - ref)}, check_close(1e-12))

    samples = rng.normal(size=(n_prompts, k))
    st_ = torch.from_numpy(samples)
    record("r_ref, normal q=0.85", (n_prompts, k), lambda: reference_reward(st_, 0.85, "normal").numpy(),
           {"scipy.norm fit+ppf (per row)": lambda: np.array([scipy.stats.norm.ppf(0.85, *scipy.stats.norm.fit(row)) for row in samples]),
            "numpy vectorised": lambda: samples.mean(-1) + scipy.stats.norm.ppf(0.85) * samples.std(-1)}, check_close(1e-9))
    record("r_ref, empirical q=0.85", (n_prompts, k), lambda: reference_reward(st_, 0.85, "empirical").numpy(),
           {"numpy.quantile": lambda: np.quantile(samples, 0.85, axis=-1)}, check_close(1e-9))

    # Bradley-Terry head: features are injected through the cache, so only the fit is timed
    from alignnb.lm import load_small_lm
    backbone, tokenizer = load_small_lm(device="cpu")
    d = 2 * backbone.config.hidden_size
    w = rng.normal(size=d) * 3 / math.sqrt(d)
    xc, xr = rng.normal(size=(n_pairs, d)), rng.normal(size=(n_pairs, d))
    swap = rng.uniform(size=n_pairs) > scipy.special.expit((xc - xr) @ w)
    xc[swap], xr[swap] = xr[swap].copy(), xc[swap].copy()
    cache = {("x", f"c{i}"): torch.tensor(xc[i], dtype=torch.float32) for i in range(n_pairs)}
    cache |= {("x", f"r{i}"): torch.tensor(xr[i], dtype=torch.float32) for i in range(n_pairs)}
    pairs = PreferencePairs(["x"] * n_pairs, [f"c{i}" for i in range(n_pairs)], [f"r{i}" for i in range(n_pairs)])
    model, l2 = BradleyTerryRewardModel(backbone, tokenizer, cache=cache), 1e-2

    def ours_fit():
        model.fit(pairs, valid_frac=0.0, l2=l2, steps=1500)
        diffs = (xc - xr) / model.feature_scale.numpy()
        return scipy.special.expit(diffs @ model.head.weight.detach().numpy().ravel())

    def sklearn_fit():
        diffs = (xc - xr) / model.feature_scale.numpy()
        lr = LogisticRegression(fit_intercept=False, C=1 / (2 * l2 * 2 * n_pairs), tol=1e-8, max_iter=10_000)
        lr.fit(np.concatenate([diffs, -diffs]), np.r_[np.ones(n_pairs), np.zeros(n_pairs)])
        return lr.predict_proba(diffs)[:, 1]
    record("Bradley-Terry linear head fit (1500 Adam steps)", (n_pairs, d), ours_fit, {"sklearn.LogisticRegression": sklearn_fit}, check_close(0.03))

    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'task':50s} {'size':>14s} {'ours s':>9s}  peers (time s, ratio = peer / ours, max |diff|)")
    for row in rows:
        peers = "; ".join(f"{k[:-2]}: {row[k]:.4f}s x{row[k[:-2] + '_ratio']:.2f} diff {row[k[:-2] + '_max_abs_diff']:.1e}"
                          for k in row if k.endswith("_s") and k != "ours_s")
        print(f"{row['task']:50s} {str(row['size']):>14s} {row['ours_s']:9.4f}  {peers}")
    out = Path(__file__).parent / "results" / "bench_rewards.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "threads": torch.get_num_threads(), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
