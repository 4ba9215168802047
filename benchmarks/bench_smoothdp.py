"""Benchmark alignnb.smoothdp against tslearn, pysdtw (soft-DTW), pytorch-crf and torch-struct (entropy Viterbi) on the CPU.

    python benchmarks/bench_smoothdp.py --quick     # soft-DTW B = 16, m = n = 64; Viterbi B = 8, T = 30 (~30 s, most of it Numba compiling)
    python benchmarks/bench_smoothdp.py             # soft-DTW B = 64, m = n in {128, 256, 512} and B = 16, m = n = 64; Viterbi B = 32, T = 100, S = 16

Every case times forward + backward on the same inputs in one process, after a warm-up (Numba compiles the peers on
their first call for each dtype). Memory: the peak resident memory that one forward + backward adds, measured in a
fresh subprocess per library and size (after a warm-up call), reported per DP cell (B m n) to show it is linear;
--quick measures alignnb only. Before timing, each library's value and gradient are compared with a float64
reference: tslearn's NumPy `soft_dtw_alignment` for soft-DTW (gradient by the chain rule through the expected
alignment), pytorch-crf in float64 for Viterbi. Writes benchmarks/results/bench_smoothdp.json, or the file given by
--out: `--out data_samples/benchmarks/bench_smoothdp.json` refreshes the committed copy that the kernels page shows
(with the versions, the thread count and the load average of the run).
"""
import argparse, json, os, platform, statistics, subprocess, sys, time, warnings
from pathlib import Path

import numpy as np
import torch

from alignnb.smoothdp import ViterbiLoss, chain_potentials, path_score, soft_dtw, viterbi

warnings.filterwarnings("ignore")


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return statistics.median(times)


def value_and_grad(loss_fn, x, y):
    "Forward + backward of loss_fn(x, y).sum() with respect to x."
    x = x.detach().clone().requires_grad_()
    value = loss_fn(x, y)
    value.sum().backward()
    return value.detach().double(), x.grad.double()


def soft_dtw_reference(x, y, gamma, pairs):
    "Values and gradients of the first `pairs` pairs from tslearn's float64 NumPy soft-DTW."
    from tslearn.metrics import soft_dtw_alignment
    values, grads = [], []
    for b in range(pairs):
        xb, yb = x[b].double().numpy(), y[b].double().numpy()
        E, value = soft_dtw_alignment(xb, yb, gamma=gamma)
        values.append(value); grads.append(2 * (E.sum(1)[:, None] * xb - E @ yb))
    return torch.tensor(values), torch.tensor(np.stack(grads))


def bench_soft_dtw(B, sizes, d, dtypes, repeats, gamma=1.0, pairs=2):
    libraries = {name: _soft_dtw_fn(name, gamma) for name in ("alignnb", "tslearn", "pysdtw")}
    rows = []
    for dtype in dtypes:
        for fn in libraries.values():  # warm-up: Numba compilation per dtype
            value_and_grad(fn, torch.randn(2, 8, d, dtype=dtype), torch.randn(2, 8, d, dtype=dtype))
        for m in sizes:
            g = torch.Generator().manual_seed(m)
            x, y = torch.randn(B, m, d, generator=g, dtype=dtype), torch.randn(B, m, d, generator=g, dtype=dtype)
            ref_value, ref_grad = soft_dtw_reference(x, y, gamma, pairs)
            row = {"task": "soft-DTW fwd+bwd", "shape": f"B={B} m=n={m} d={d}", "dtype": str(dtype).replace("torch.", "")}
            times = {name: [] for name in libraries}
            for name, fn in libraries.items():
                value, grad = value_and_grad(fn, x, y)
                row[f"{name}_value_rel_err"] = float(((value[:pairs] - ref_value).abs() / ref_value.abs()).max())
                row[f"{name}_grad_max_err"] = float((grad[:pairs] - ref_grad).abs().max() / ref_grad.abs().max())
            for _ in range(repeats):  # interleaved: a burst of load from other jobs hits every library
                for name, fn in libraries.items():
                    t = time.perf_counter(); value_and_grad(fn, x, y); times[name].append(time.perf_counter() - t)
            for name in libraries: row[f"{name}_s"] = statistics.median(times[name])
            tolerance = 1e-3 if dtype == torch.float32 else 1e-6
            for name in libraries:  # every library must agree with the float64 reference before its time counts
                assert row[f"{name}_value_rel_err"] < tolerance, (name, row)
            row["ratio_tslearn"] = row["tslearn_s"] / row["alignnb_s"]
            row["ratio_pysdtw"] = row["pysdtw_s"] / row["alignnb_s"]
            rows.append(row)
    return rows


def bench_viterbi(B, T, S, dtypes, repeats, struct=True):
    """Entropy Viterbi forward + backward against pytorch-crf: the CRF loss through ViterbiLoss (peer: its NLL) and
    the partition function through viterbi(chain_potentials(...)) (peer: its normaliser), each with the emissions
    alone trainable and with the transitions, start and end trainable too. Repeats are interleaved across cases."""
    from torchcrf import CRF
    rows = []
    for dtype in dtypes:
        g = torch.Generator().manual_seed(T)
        emissions = torch.randn(B, T, S, generator=g, dtype=dtype)
        tags = torch.randint(0, S, (B, T), generator=g)
        lengths = torch.randint(T // 2, T + 1, (B,), generator=g); lengths[0] = T
        mask = torch.arange(T) < lengths[:, None]
        crf = CRF(S, batch_first=True).to(dtype)
        loss = ViterbiLoss("entropy", 1.0, reduction="sum")

        def params(all_trainable):
            e = emissions.detach().clone().requires_grad_()
            crf_params = [crf.transitions.detach().T.clone(), crf.start_transitions.detach().clone(), crf.end_transitions.detach().clone()]
            return e, [q.requires_grad_(all_trainable) for q in crf_params]

        def peer(kind, all_trainable):
            e = emissions.detach().clone().requires_grad_()
            crf.requires_grad_(all_trainable)
            if kind == "loss": value = -crf(e, tags, mask=mask, reduction="sum")
            else: value = crf._compute_normalizer(e.transpose(0, 1), mask.transpose(0, 1)).sum()
            value.backward()
            return value.detach().double(), e.grad.double()

        def ours(kind, all_trainable):
            e, (trans, start, end) = params(all_trainable)
            theta = chain_potentials(e, trans, start, end, lengths)
            value = loss(theta, tags, lengths) if kind == "loss" else viterbi(theta, "entropy", 1.0, lengths).sum()
            value.backward()
            return value.detach().double(), e.grad.double()

        def struct_fn(kind, all_trainable):  # torch-struct's linear-chain CRF on the same potentials (T + 1 states)
            from torch_struct import LinearChainCRF
            e, (trans, start, end) = params(all_trainable)
            theta = chain_potentials(e, trans, start, end, lengths)
            value = LinearChainCRF(theta, lengths=lengths + 1).partition.sum()
            if kind == "loss": value = value - path_score(theta, tags, lengths).sum()
            value.backward()
            return value.detach().double(), e.grad.double()

        crf64 = CRF(S, batch_first=True).double(); crf64.load_state_dict(crf.state_dict())
        e64 = emissions.detach().double().clone().requires_grad_()
        ref = {"loss": -crf64(e64, tags, mask=mask, reduction="sum")}
        ref["loss"].backward(); ref_grad = {"loss": e64.grad.clone()}; e64.grad = None
        ref["partition"] = crf64._compute_normalizer(e64.transpose(0, 1), mask.transpose(0, 1)).sum()
        ref["partition"].backward(); ref_grad["partition"] = e64.grad.clone()
        for kind in ("loss", "partition"):
            for all_trainable in (False, True):
                trained = "all CRF parameters" if all_trainable else "emissions only"
                via = "ViterbiLoss" if kind == "loss" else "viterbi(chain_potentials)"
                row = {"task": "entropy Viterbi fwd+bwd", "shape": f"B={B} T={T} S={S}", "dtype": str(dtype).replace("torch.", ""),
                       "via": via, "trainable": trained}
                fns = {"alignnb": lambda: ours(kind, all_trainable), "pytorch_crf": lambda: peer(kind, all_trainable)}
                if struct: fns["torch_struct"] = lambda: struct_fn(kind, all_trainable)
                for name, fn in fns.items():
                    value, grad = fn()
                    row[f"{name}_value_rel_err"] = float((value - ref[kind].detach()).abs() / ref[kind].detach().abs())
                    row[f"{name}_grad_max_err"] = float((grad - ref_grad[kind]).abs().max())
                times = {name: [] for name in fns}
                for r in range(repeats):  # interleaved: a burst of load from other jobs hits every library
                    for name, fn in fns.items():
                        if name == "torch_struct" and r >= 3: continue  # ~70x slower: three timings say enough
                        t = time.perf_counter(); fn(); times[name].append(time.perf_counter() - t)
                for name in fns: row[f"{name}_s"] = statistics.median(times[name])
                assert row["alignnb_value_rel_err"] < (1e-4 if dtype == torch.float32 else 1e-10), row
                row["ratio_pytorch_crf"] = row["pytorch_crf_s"] / row["alignnb_s"]
                row["alignnb_over_pytorch_crf"] = row["alignnb_s"] / row["pytorch_crf_s"]
                if struct: row["ratio_torch_struct"] = row["torch_struct_s"] / row["alignnb_s"]
                rows.append(row)
        crf.requires_grad_(True)
    return rows


def environment():
    "Versions and machine of the run, for the record."
    import numba, pysdtw, tslearn
    from importlib.metadata import version
    return {"torch": torch.__version__, "numba": numba.__version__, "tslearn": tslearn.__version__,
            "pysdtw": version("pysdtw"), "pytorch-crf": version("pytorch-crf"), "torch-struct": version("torch-struct"),
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "processor": platform.processor()}


def _soft_dtw_fn(library, gamma=1.0):
    if library == "alignnb": return lambda x, y: soft_dtw(x, y, gamma)
    if library == "pysdtw":
        import pysdtw
        return pysdtw.SoftDTW(gamma=gamma, use_cuda=False)
    from tslearn.metrics import SoftDTWLossPyTorch
    return SoftDTWLossPyTorch(gamma=gamma)


def _status_kb(field):
    "A field of /proc/self/status in kB (VmRSS: resident now, VmHWM: its peak since the last reset)."
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"): return int(line.split()[1])


def probe_memory(library, B, m, dtype):
    "In this (fresh) process: the peak resident memory, in MB, that one forward + backward adds after a warm-up."
    fn, dtype = _soft_dtw_fn(library), getattr(torch, dtype)
    value_and_grad(fn, torch.randn(2, 8, 8, dtype=dtype), torch.randn(2, 8, 8, dtype=dtype))  # compile, allocate caches
    x, y = torch.randn(B, m, 8, dtype=dtype), torch.randn(B, m, 8, dtype=dtype)
    with open("/proc/self/clear_refs", "w") as f: f.write("5")  # reset the peak to the current resident size
    base = _status_kb("VmRSS")  # (getrusage's ru_maxrss would carry the parent's peak over fork and exec)
    value_and_grad(fn, x, y)
    return (_status_kb("VmHWM") - base) / 1024


def bench_memory(B, sizes, dtypes, libraries):
    rows = []
    for dtype in dtypes:
        for m in sizes:
            row = {"task": "soft-DTW fwd+bwd peak memory", "shape": f"B={B} m=n={m} d=8", "dtype": dtype, "cells": B * m * m}
            for library in libraries:
                out = subprocess.run([sys.executable, __file__, "--probe", library, str(B), str(m), dtype], capture_output=True, text=True, check=True)
                row[f"{library}_MB"] = float(out.stdout.strip().splitlines()[-1])
                row[f"{library}_bytes_per_cell"] = row[f"{library}_MB"] * 2**20 / row["cells"]
            rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_smoothdp.json",
                    help="where to write the JSON (default: benchmarks/results/bench_smoothdp.json)")
    ap.add_argument("--only", choices=("viterbi", "dtw"), help="run one half (the other rows are kept from --out if it exists)")
    ap.add_argument("--threads", type=int, default=None, help="torch and Numba threads (default: torch's)")
    ap.add_argument("--probe", nargs=4, metavar=("LIBRARY", "B", "M", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        library, B, m, dtype = args.probe
        print(probe_memory(library, int(B), int(m), dtype)); return
    if args.threads:
        import numba
        torch.set_num_threads(args.threads); numba.set_num_threads(args.threads)
    dtypes = (torch.float32, torch.float64)
    load_before = list(os.getloadavg())  # 1, 5, 15 min: the page states them, since other jobs slow the peers too
    if args.quick:
        rows = bench_soft_dtw(16, (64,), 8, dtypes, repeats=5) + bench_viterbi(8, 30, 16, dtypes, repeats=3)
        memory = bench_memory(64, (256, 512), ("float32",), ("alignnb",))  # smaller runs fit in memory the imports already hold
    else:
        old = json.loads(args.out.read_text()) if args.only and args.out.exists() else {"rows": [], "memory": []}
        keep = [r for r in old["rows"] if ("Viterbi" in r["task"]) != (args.only == "viterbi")] if args.only else []
        rows, memory = keep, old["memory"] if args.only == "viterbi" else []
        if args.only != "viterbi":
            rows = (bench_soft_dtw(16, (64,), 8, dtypes, repeats=7) + bench_soft_dtw(64, (64, 128, 256, 512), 8, dtypes, repeats=5)
                    + [r for r in rows if "Viterbi" in r["task"]])
            memory = bench_memory(64, (128, 256, 512), ("float32", "float64"), ("alignnb", "pysdtw", "tslearn"))
        if args.only != "dtw":
            rows = ([r for r in rows if "Viterbi" not in r["task"]] + bench_viterbi(32, 100, 16, dtypes, repeats=21)
                    + bench_viterbi(32, 500, 64, (torch.float32,), repeats=9, struct=False))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads; ratio = peer time / alignnb time (> 1: alignnb faster)")
    header = f"{'task':<24} {'shape':<22} {'dtype':<8} {'alignnb s':>9} {'peer':<12} {'peer s':>8} {'ratio':>6} {'ours err':>9} {'peer err':>9}"
    print(header); print("-" * len(header))
    for row in rows:
        for peer in ("tslearn", "pysdtw", "pytorch_crf", "torch_struct"):
            if f"{peer}_s" in row:
                print(f"{row['task'] + (' ' + row['via'] + ', ' + row['trainable'] if 'via' in row else ''):<24} {row['shape']:<22} {row['dtype']:<8} {row['alignnb_s']:>9.3f} {peer:<12} {row[peer + '_s']:>8.3f} "
                      f"{row['ratio_' + peer]:>6.2f} {row['alignnb_grad_max_err']:>9.1e} {row[peer + '_grad_max_err']:>9.1e}")
    print("err: max gradient error against the float64 reference (relative to the largest entry for soft-DTW)")
    print("\npeak memory of one forward + backward (MB, and bytes per DP cell B*m*n; linear memory = constant bytes per cell)")
    for row in memory:
        libs = [k[:-3] for k in row if k.endswith("_MB")]
        print(f"{row['shape']:<22} {row['dtype']:<8} " + "  ".join(f"{lib} {row[lib + '_MB']:8.1f} MB {row[lib + '_bytes_per_cell']:6.1f} B/cell" for lib in libs))
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    header = {"quick": args.quick, "threads": torch.get_num_threads(), "environment": environment(),
              "load_average_before": load_before, "load_average_after": list(os.getloadavg())}
    if args.only and not args.quick:  # the kept rows keep the old header; the new ones carry their own run's
        for row in rows:
            if ("Viterbi" in row["task"]) == (args.only == "viterbi"):
                row.update(threads=header["threads"], load_average_before=load_before, load_average_after=header["load_average_after"])
        header.update({k: old[k] for k in ("threads", "environment", "load_average_before", "load_average_after") if k in old})
    out.write_text(json.dumps({**header, "rows": rows, "memory": memory}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
