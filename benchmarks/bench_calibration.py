"""Benchmark alignnb.calibration's binned estimators against torchmetrics and netcal (and uncertainty-calibration
for the debiased classwise estimator) on the same inputs, in one process.

    python benchmarks/bench_calibration.py --quick     # N = 20,000, C = 100 (a few seconds)
    python benchmarks/bench_calibration.py             # N = 1,000,000, C = 1000 (4 GB of float32 probabilities)

Writes benchmarks/results/bench_calibration.json.
"""
import argparse, json, os, time, tracemalloc
from pathlib import Path

import numpy as np
import torch

from alignnb.calibration import binned_calibration_error


def make_data(n, c, seed=0, chunk=50_000):
    "Float32 softmax probabilities of logistic-normal logits with labels drawn from them (generated in chunks)."
    rng = np.random.default_rng(seed)
    p = np.empty((n, c), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    for a in range(0, n, chunk):
        z = 2.0 * rng.standard_normal((min(chunk, n - a), c), dtype=np.float32)
        z -= z.max(1, keepdims=True); np.exp(z, out=z); z /= z.sum(1, keepdims=True)
        p[a:a + len(z)] = z
        u = rng.random((len(z), 1), dtype=np.float32)
        y[a:a + len(z)] = np.minimum((np.cumsum(z, 1) < u).sum(1), c - 1)
    return p, y


def best_time(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t)
    return best, out


def peak_extra_mb(fn):
    tracemalloc.start(); fn(); _, peak = tracemalloc.get_traced_memory(); tracemalloc.stop()
    return peak / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--c", type=int, default=None)
    args = ap.parse_args()
    n = args.n or (20_000 if args.quick else 1_000_000)
    c = args.c or (100 if args.quick else 1000)
    repeats = 3 if args.quick else 2
    from torchmetrics.functional.classification import multiclass_calibration_error
    from netcal.metrics import ECE
    import calibration as uncal

    p, y = make_data(n, c)
    pt, yt = torch.from_numpy(p), torch.from_numpy(y)
    rows = []

    def compare(task, ours_fn, peers, tol):
        t_ours, v_ours = best_time(ours_fn, repeats)
        row = dict(task=task, n=n, c=c, ours_s=t_ours, ours=v_ours, ours_peak_extra_mb=peak_extra_mb(ours_fn))
        for name, fn in peers.items():
            t, v = best_time(fn, repeats)
            row[f"{name}_s"], row[name] = t, float(v)
            row[f"{name}_ratio"] = t / t_ours
            if abs(float(v) - v_ours) > tol:
                raise SystemExit(f"{task}: ours {v_ours} vs {name} {float(v)} disagree beyond {tol}")
        rows.append(row)

    for norm in ("l1", "l2", "max"):
        peers = {"torchmetrics": lambda norm=norm: multiclass_calibration_error(pt, yt, num_classes=c, n_bins=15, norm=norm)}
        if norm == "l1": peers["netcal"] = lambda: ECE(bins=15).measure(p, y)
        compare(f"top-label ECE {norm}, 15 bins", lambda norm=norm: binned_calibration_error(p, y, 15, norm=norm), peers, 1e-4)
    # classwise equal-width ECE: no peer implements it; timed and memory-checked for the record
    t_cw, v_cw = best_time(lambda: binned_calibration_error(p, y, 15, mode="classwise"), 1)
    rows.append(dict(task="classwise ECE l1 (no peer)", n=n, c=c, ours_s=t_cw, ours=v_cw,
                     ours_peak_extra_mb=peak_extra_mb(lambda: binned_calibration_error(p, y, 15, mode="classwise"))))
    # Kumar et al.'s debiased classwise L2 with equal-mass bins; the reference is pure Python, so a subsample
    m = min(n, 20_000); cs = min(c, 20)
    ps = p[:m, :cs].astype(np.float64); ps /= ps.sum(1, keepdims=True); ys = np.minimum(y[:m], cs - 1)
    t_small = dict(task="classwise debiased L2, equal-mass", n=m, c=cs)
    t_ours, v_ours = best_time(lambda: binned_calibration_error(ps, ys, 15, "mass", "l2", "classwise", debias=True), repeats)
    t_unc, v_unc = best_time(lambda: uncal.get_calibration_error(ps, ys, p=2, debias=True), 1)
    if abs(v_ours - v_unc) > 1e-9: raise SystemExit(f"debiased classwise: ours {v_ours} vs uncertainty-calibration {v_unc}")
    rows.append(dict(t_small, ours_s=t_ours, ours=v_ours, uncertainty_calibration_s=t_unc, uncertainty_calibration=v_unc,
                     uncertainty_calibration_ratio=t_unc / t_ours))

    print(f"threads: torch {torch.get_num_threads()}, cpus {os.cpu_count()}; input {p.nbytes / 2**20:.0f} MB float32")
    print(f"{'task':38s} {'N':>9s} {'C':>5s} {'ours s':>8s} {'peak MB':>8s}  peers (time s, slowdown vs ours)")
    for r in rows:
        peers = ", ".join(f"{k[:-2]} {r[k]:.3f}s x{r[k[:-2] + '_ratio']:.1f}" for k in r if k.endswith("_s") and k != "ours_s")
        print(f"{r['task']:38s} {r['n']:9d} {r['c']:5d} {r['ours_s']:8.3f} {r.get('ours_peak_extra_mb', float('nan')):8.1f}  {peers}")
    out = Path(__file__).parent / "results" / "bench_calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(quick=args.quick, rows=rows), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
