"""Benchmark alignnb.cal's store and widget: a committed label through `LabelStore.set_label` against the same two
statements written with plain sqlite3 (the peer), at both fsync levels, and the `Labeller`'s latency per label
(store write plus a full refresh of the widgets) as the queue grows.

    python benchmarks/bench_cal.py --quick     # 300 writes, queues of 300 and 1500 items (about 20 s)
    python benchmarks/bench_cal.py             # 2000 writes, queues of 300, 3000 and 10000 items

Writes benchmarks/results/bench_cal.json.
"""
import argparse, json, os, sqlite3, tempfile, time
from pathlib import Path

from alignnb.cal import LabelSchema, LabelStore, Labeller
from alignnb.cal.experiments import item_fields, support_conversations

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = LabelSchema.load(ROOT / "data_samples" / "cal" / "support_schema.yaml")


def plain_sqlite(path, rows, n, synchronous):
    "The peer: one transaction per label, updating the current label and appending the history row."
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE labels(item_id TEXT, annotator TEXT, label TEXT, updated_at REAL, PRIMARY KEY(item_id, annotator))")
    db.execute("CREATE TABLE history(seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id, annotator, action, old, new, at)")
    t = time.perf_counter()
    for i in range(n):
        r = rows[i % len(rows)]
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO labels VALUES (?, 'a', ?, ?)", (r["id"], r["gold"], time.time()))
        db.execute("INSERT INTO history(item_id, annotator, action, new, at) VALUES (?, 'a', 'label', ?, ?)",
                   (r["id"], r["gold"], time.time()))
        db.execute("COMMIT")
    seconds = (time.perf_counter() - t) / n
    labels = dict(db.execute("SELECT item_id, label FROM labels"))
    db.close()
    return seconds, labels


def alignnb_store(path, rows, n, synchronous):
    store = LabelStore(path, schema=SCHEMA, annotator="a", synchronous=synchronous)
    store.add_items(item_fields(r) for r in rows)
    t = time.perf_counter()
    for i in range(n): store.set_label(rows[i % len(rows)]["id"], rows[i % len(rows)]["gold"])
    seconds = (time.perf_counter() - t) / n
    labels = store.labels()
    store.close()
    return seconds, labels


def labeller_latency(folder, n_items, n_labels):
    "Median seconds per label of `Labeller.choose` (gold labels, so none is refused) on a queue of `n_items`."
    rows = support_conversations(max(1, n_items // 7 + 1))[:n_items]
    store = LabelStore(Path(folder) / f"lab{n_items}.sqlite", schema=SCHEMA, synchronous="NORMAL")
    lab = Labeller(SCHEMA, [item_fields(r) for r in rows], store)
    gold, times = {r["id"]: r["gold"] for r in rows}, []
    for _ in range(min(n_labels, n_items)):
        t = time.perf_counter()
        assert lab.choose(gold[lab.current.id])
        times.append(time.perf_counter() - t)
    store.close()
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_cal.json"))
    args = ap.parse_args()
    n_writes, sizes, n_labels = (300, (300, 1500), 60) if args.quick else (2000, (300, 3000, 10000), 200)
    rows, out = support_conversations(40), []
    with tempfile.TemporaryDirectory() as folder:
        for sync in ("FULL", "NORMAL"):
            ours, our_labels = alignnb_store(Path(folder) / f"ours-{sync}.sqlite", rows, n_writes, sync)
            peer, peer_labels = plain_sqlite(Path(folder) / f"peer-{sync}.sqlite", rows, n_writes, sync)
            assert our_labels == peer_labels, "the store and plain sqlite3 disagree on the labels"
            out.append({"case": f"set_label synchronous={sync}", "alignnb_ms": 1000 * ours, "peer_ms": 1000 * peer,
                        "ratio": peer / ours})
        for n in sizes:
            out.append({"case": f"Labeller.choose, {n} items", "alignnb_ms": 1000 * labeller_latency(folder, n, n_labels),
                        "peer_ms": None, "ratio": None})
    print(f"{'case':38} {'alignnb ms':>11} {'sqlite3 ms':>11} {'ratio':>6}   load {os.getloadavg()[0]:.1f}")
    for r in out:
        peer = "" if r["peer_ms"] is None else f"{r['peer_ms']:11.3f} {r['ratio']:6.2f}"
        print(f"{r['case']:38} {r['alignnb_ms']:11.3f} {peer}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": out, "load_average": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()
