"""Benchmark alignnb.sam's batched decoder against segment_anything's per-image loop (the package's MaskDecoder serves
one image a call), forward and forward + backward, on the small SAM, for B images x K prompts; and seconds per
customisation step of PLM, PLM + PMM and full decoder fine-tuning. One process, one thread; the two decoder paths
are checked to agree before they are timed.

    python benchmarks/bench_sam.py --quick     # B in (4, 16), a few repeats (under a minute)
    python benchmarks/bench_sam.py             # B in (4, 16, 64)

Writes benchmarks/results/bench_sam.json (or --out).
"""
import argparse, json, platform, statistics, time
from pathlib import Path

import numpy as np
import torch

from alignnb.sam import (Example, customise, decode, decode_loop, encode_prompts, point_in_mask, preprocess, small_sam)
from alignnb.data import scenes


def median_seconds(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def decoder_rows(sam, batches, K, repeats):
    rows = []
    for B in batches:
        rng = np.random.default_rng(B)
        imgs = np.stack([s.image for s in scenes(B, seed=3, image_size=128)])
        with torch.no_grad(): z = sam.image_encoder(preprocess(sam, imgs))
        pts = torch.tensor(rng.uniform(0, 127, (B, K, 1, 2)), dtype=torch.float32)
        sp, de = encode_prompts(sam, pts, torch.ones(B, K, 1, dtype=torch.long))
        sp, de = sp.detach(), de.detach()
        with torch.no_grad():
            diff = (decode(sam, z, sp, de).select(True)[0] - decode_loop(sam, z, sp, de, True)[0]).abs().max().item()
        def fwd(batched):
            with torch.no_grad(): decode(sam, z, sp, de) if batched else decode_loop(sam, z, sp, de, True)
        def fwd_bwd(batched):
            out = decode(sam, z, sp, de).select(True)[0] if batched else decode_loop(sam, z, sp, de, True)[0]
            out.mean().backward()
            sam.zero_grad(set_to_none=True)
        rows.append({"B": B, "K": K, "max_abs_diff": diff,
                     "forward_batched_s": median_seconds(lambda: fwd(True), repeats),
                     "forward_loop_s": median_seconds(lambda: fwd(False), repeats),
                     "fwd_bwd_batched_s": median_seconds(lambda: fwd_bwd(True), repeats),
                     "fwd_bwd_loop_s": median_seconds(lambda: fwd_bwd(False), repeats)})
    return rows


def customise_rows(sam, shots, steps):
    rng = np.random.default_rng(0)
    ex = [Example(s.image, s.objects[0].mask, point=point_in_mask(s.objects[0].mask, rng))
          for s in scenes(shots, seed=4, image_size=128) if s.objects[0].mask.any()]
    out = []
    for modules in (("plm",), ("plm", "pmm"), ("decoder",)):
        run = customise(sam, ex, modules=modules, steps=steps)
        out.append({"modules": "+".join(modules), "shots": len(ex), "steps": steps, "trainable": run.trainable,
                    "seconds_per_step": run.seconds / steps})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="benchmarks/results/bench_sam.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    sam = small_sam()
    for q in sam.parameters(): q.requires_grad_(True)
    batches, repeats, steps = ((4, 16), 3, 5) if a.quick else ((4, 16, 64), 5, 20)
    res = {"machine": platform.processor() or platform.machine(), "threads": 1,
           "decoder": decoder_rows(sam, batches, 4, repeats), "customise": customise_rows(sam, 8, steps)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
