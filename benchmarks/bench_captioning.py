"""Benchmark alignnb.captioning's cost against the Up-Down baseline: seconds per cross-entropy training step, per
SCST step (sampling, greedy baseline, CIDEr-D reward, backward), per greedy decode and per beam-search decode (beam 3)
of one batch, for the spatial, semantic and fused GCN-LSTM. One process, one thread, the same batch for every model;
the region features are the frozen attribute-trained ones of the reproduction; each model first gets a short
cross-entropy warm-up so its captions have a realistic length (decoding time follows caption length; the rows say it).

    python benchmarks/bench_captioning.py --quick     # 20 scenes, 2 repeats (well under a minute)
    python benchmarks/bench_captioning.py             # 50 scenes, 5 repeats

Ratio = Up-Down seconds / model seconds (below 1: the graph costs that much more). Writes
benchmarks/results/bench_captioning.json (or --out).
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

import torch

from alignnb.captioning import (Captioner, Vocab, beam_search, caption_loss, fit_attribute_encoder,
                                fit_relation_classifier, greedy_decode, scene_batch, semantic_graph, with_features)
from alignnb.captioning.scst import scst_train
from alignnb.data import scenes


def median_seconds(fn, repeats):
    "Median wall seconds of fn() over `repeats` calls after one warm-up call."
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/bench_captioning.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, repeats, warmup = (20, 2, 10) if args.quick else (50, 5, 40)
    sc = scenes(n, seed=7)
    vocab = Vocab([c for s in sc for c in s.captions])
    raw = scene_batch(sc, vocab, 28)
    enc = fit_attribute_encoder([raw], epochs=1)
    batch = with_features(raw, enc)
    clf = fit_relation_classifier([batch], 1, in_features=enc.n_features)
    sem = semantic_graph(clf, batch)
    torch.manual_seed(0)
    models = {g: Captioner(len(vocab), g, in_features=enc.n_features) for g in ("none", "spatial", "semantic")}
    labels = {"none": None, "spatial": None, "semantic": sem}
    for g, m in models.items():  # a short cross-entropy warm-up, so that every model's captions have a real length
        opt = torch.optim.Adam(m.parameters(), 4e-3)
        for _ in range(warmup):
            opt.zero_grad()
            caption_loss(m, batch, labels[g]).backward()
            opt.step()
    # agreement first: beam 1 is greedy decoding, and fusing a model with itself changes nothing
    for g, m in models.items():
        m.eval()
        greedy = [vocab.decode(x) for x in greedy_decode(m, batch, 12, [labels[g]])[0]]
        assert greedy == [vocab.decode(x) for x in beam_search(m, batch, 1, 12, [labels[g]])], g
        assert greedy == [vocab.decode(x) for x in greedy_decode([m, m], batch, 12, [labels[g]] * 2)[0]], g
    cases = {"Up-Down": ["none"], "spatial GCN-LSTM": ["spatial"], "semantic GCN-LSTM": ["semantic"],
             "fused GCN-LSTM": ["spatial", "semantic"]}
    opts = {g: torch.optim.Adam(m.parameters(), 1e-4) for g, m in models.items()}

    def xe(gs):
        for g in gs:
            opts[g].zero_grad()
            caption_loss(models[g], batch, labels[g]).backward()
            opts[g].step()

    def scst(gs):
        for g in gs: scst_train(models[g], [batch], vocab, 1, 1e-5, 28, None if labels[g] is None else [labels[g]], 5)

    decode = {"greedy decode": lambda gs: greedy_decode([models[g] for g in gs], batch, 28, [labels[g] for g in gs]),
              "beam-3 decode": lambda gs: beam_search([models[g] for g in gs], batch, 3, 28, [labels[g] for g in gs])}
    steps = {"XE training step": xe, "SCST step (5 samples)": scst, **decode}
    rows = []
    for step, fn in steps.items():
        secs = {name: median_seconds(lambda: fn(gs), repeats) for name, gs in cases.items()}
        row = {"case": f"{step}, batch of {n} scenes", **{f"{k} s": v for k, v in secs.items()}}
        row |= {f"ratio {k}": secs["Up-Down"] / v for k, v in secs.items() if k != "Up-Down"}
        if step in decode:  # decoding time scales with caption length, which differs between models: say it
            for name, gs in cases.items():
                out = fn(gs)
                ids = out[0].tolist() if isinstance(out, tuple) else out
                row[f"{name} mean tokens"] = statistics.mean(len(vocab.decode(x).split()) + 1 for x in ids)
        rows.append(row)
    for row in rows: print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    record = {"rows": rows, "ratio": "Up-Down seconds / model seconds", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              "python": platform.python_version(), "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
