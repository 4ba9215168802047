"""Benchmark alignnb.active_ner's training cost: seconds per epoch of the CNN-CNN-LSTM against the BiLSTM-CRF on the
same sentences, and seconds per active-learning round of incremental training against from-scratch retraining, with
the F1 each reaches (a fast round that learns nothing is no win). One process, one thread.

    python benchmarks/bench_active_ner.py --quick     # 100 sentences, 3 rounds (under a minute)
    python benchmarks/bench_active_ner.py             # 400 sentences, 8 rounds

Writes benchmarks/results/bench_active_ner.json (or --out).
"""
import argparse, json, os, platform, statistics, time
from dataclasses import replace
from pathlib import Path

import torch

from alignnb.data import ner_corpus
from alignnb.active_ner import (ActiveLearningConfig, BiLSTMCRF, CNNCNNLSTM, active_learning, build_vocabulary,
                                encode_batch, train_tagger)


def epoch_seconds(cls, sentences, vocab, repeats):
    "Median seconds of one training epoch from a fresh model, after a warm-up epoch."
    times = []
    for r in range(repeats + 1):
        torch.manual_seed(r)
        model = cls(vocab)
        t = time.perf_counter()
        train_tagger(model, sentences, vocab, epochs=1)
        if r: times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/bench_active_ner.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, rounds, repeats = (100, 3, 2) if args.quick else (400, 8, 5)
    pool, test = ner_corpus(n * 2, seed=0), ner_corpus(100, seed=0, split="test")
    vocab = build_vocabulary(pool)
    # agreement first: both models see the same batches and return well-formed decodes
    batch = encode_batch(pool[:4], vocab, False)
    for cls in (CNNCNNLSTM, BiLSTMCRF):
        d = cls(vocab).eval().decode(batch)
        assert d.tags.shape == batch.words.shape and torch.isfinite(d.log_prob).all()
    rows = []
    cnn, crf = epoch_seconds(CNNCNNLSTM, pool[:n], vocab, repeats), epoch_seconds(BiLSTMCRF, pool[:n], vocab, repeats)
    rows.append({"case": f"epoch, {n} sentences", "alignnb CNN-CNN-LSTM s": cnn, "BiLSTM-CRF s": crf,
                 "ratio": crf / cnn})
    base = ActiveLearningConfig(strategy="mnlp", rounds=rounds)
    runs = {inc: active_learning(pool, test, replace(base, incremental=inc)) for inc in (True, False)}
    per_round = {inc: statistics.median([r.train_seconds for r in run.log[1:]]) for inc, run in runs.items()}
    rows.append({"case": f"round, {rounds} rounds of 2%", "incremental s": per_round[True],
                 "from scratch s": per_round[False], "ratio": per_round[False] / per_round[True],
                 "incremental final F1": runs[True].log[-1].f1, "from scratch final F1": runs[False].log[-1].f1})
    for row in rows: print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    record = {"rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "load_average": os.getloadavg(), "python": platform.python_version(), "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
