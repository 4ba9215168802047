"""Benchmark alignnb.melita's archive and search loops against pyribs, in one process.

    python benchmarks/bench_melita.py --quick     # a few seconds
    python benchmarks/bench_melita.py             # larger batches and budgets

Cases: (1) archive insertions per second, `EliteArchive.add` against pyribs' `GridArchive.add` on the same
batches, after checking that both end with the same elites; (2) evaluations (assessor calls) per second of
plain MAP-Elites on our archive, on pyribs' archive (same run, checked elite for elite), of MEliTA (all), and of
pyribs' own ask/tell loop (Scheduler + GaussianEmitter) evolving cover genomes against one fixed description with the
same assessor. Writes benchmarks/results/bench_melita.json (or --out).
"""
import argparse, json, os, platform, time
from pathlib import Path

import numpy as np
import torch

from alignnb.melita import (EliteArchive, SearchConfig, image_bc, load_assessor, map_elites, melita, render_cover,
                            generate_description, coherence, coherence_to_fitness)


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return float(np.median(times))


def archive_case(n_batches, batch, repeats):
    from ribs.archives import GridArchive
    rng = np.random.default_rng(0)
    dims, ranges = [5, 5, 5, 5], [(0, 1)] * 4
    data = [(rng.choice([0.1, 0.5, 0.9], batch) + rng.random(batch) * 0.01 * (rng.random(batch) < 0.5),
             rng.random((batch, 4))) for _ in range(n_batches)]

    def ours():
        a = EliteArchive(dims, ranges)
        for i, (f, m) in enumerate(data): a.add(np.arange(batch) + i * batch, np.arange(batch), f, m)
        return a

    def theirs():
        a = GridArchive(solution_dim=2, dims=dims, ranges=ranges, dtype=np.float64)
        for i, (f, m) in enumerate(data):
            a.add(np.c_[np.arange(batch) + i * batch, np.arange(batch)].astype(float), f, m)
        return a

    o, t = ours().elites(), theirs().data()
    order = np.argsort(t["index"])
    assert np.array_equal(o[0], t["index"][order]) and np.array_equal(o[1], t["solution"][order, 0].astype(int))
    n = n_batches * batch
    to, tt = median_time(ours, repeats), median_time(theirs, repeats)
    return {"case": f"archive add, {n_batches} batches of {batch}", "alignnb_per_s": n / to,
            "pyribs_per_s": n / tt, "ratio": tt / to}


def ribs_loop(assessor, calls, batch, seed=0):
    "pyribs' ask/tell loop on cover genomes, fitness against one fixed description, measures = image BC."
    from ribs.archives import GridArchive
    from ribs.emitters import GaussianEmitter
    from ribs.schedulers import Scheduler
    text = generate_description(1, np.random.default_rng(seed))
    u = assessor.embed_texts([text])
    archive = GridArchive(solution_dim=8, dims=[5, 5], ranges=[(0, 1), (0, 0.6)], seed=seed)
    x0 = np.full(8, 0.5)
    emitter = GaussianEmitter(archive, sigma=0.12, x0=x0, bounds=[(0, 1)] * 8, batch_size=batch, seed=seed)
    scheduler = Scheduler(archive, [emitter])
    for _ in range(calls // batch):
        g = scheduler.ask()
        v = assessor.embed_images(g)
        f = coherence_to_fitness(coherence(np.repeat(u, len(g), 0), v))
        m = np.stack([image_bc(render_cover(x)) for x in g])
        scheduler.tell(f, m)
    return archive


def loop_cases(calls, batch, repeats):
    assessor = load_assessor()
    cfg = SearchConfig(generator_calls=calls, batch=batch, n_init=32)
    a = map_elites(cfg, assessor)
    b = map_elites(SearchConfig(generator_calls=calls, batch=batch, n_init=32, archive="ribs"), assessor)
    assert all(np.array_equal(x, y) for x, y in zip(a.archive.elites(), b.archive.elites()))
    rows = []
    cases = {"MAP-Elites, our archive": lambda: map_elites(cfg, assessor),
             "MAP-Elites, pyribs archive": lambda: map_elites(
                 SearchConfig(generator_calls=calls, batch=batch, n_init=32, archive="ribs"), assessor),
             "MEliTA (all), our archive": lambda: melita(cfg, assessor),
             "pyribs Scheduler + GaussianEmitter (genomes only)": lambda: ribs_loop(assessor, calls // 2, batch)}
    for name, fn in cases.items():
        runs = []
        seconds = median_time(lambda: runs.append(fn()), repeats)
        last = runs[-1]
        scored = last.curve("assessor_calls")[-1] if hasattr(last, "curve") else (calls // 2 // batch) * batch
        made = last.curve("generator_calls")[-1] if hasattr(last, "curve") else (calls // 2 // batch) * batch
        rows.append({"case": name, "seconds": seconds, "assessor_calls_per_s": scored / seconds,
                     "generator_calls_per_s": made / seconds})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/bench_melita.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import ribs
    rows = [archive_case(50 if args.quick else 400, 64 if args.quick else 256, 3 if args.quick else 5)]
    rows += loop_cases(400 if args.quick else 2000, 16, 1 if args.quick else 3)
    for r in rows:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    record = {"rows": rows, "torch_threads": torch.get_num_threads(), "ribs": ribs.__version__,
              "numpy": np.__version__, "python": platform.python_version(), "load_average": os.getloadavg(),
              "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
