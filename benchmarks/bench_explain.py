"""Benchmark alignnb.explain's integrated gradients against Captum's on all-MiniLM-L6-v2, at equal steps, rule and
batch, in one process (time ratio and the largest difference of the scores).

    python benchmarks/bench_explain.py --quick    # 2 sentences, 16 steps
    python benchmarks/bench_explain.py            # 8 sentences, 50 steps

Writes benchmarks/results/bench_explain.json (or --out).
"""
import argparse, json, os, platform, time
from pathlib import Path

import torch


class MiniLMHead(torch.nn.Module):
    "MiniLM mean-pooled, then a fixed random 2-class head: the shape `integrated_gradients` expects."
    def __init__(self, model, tokenizer):
        super().__init__()
        self.m, self.pad_id, self.cls_id = model, tokenizer.pad_token_id, tokenizer.cls_token_id
        self.head = torch.nn.Linear(model.config.hidden_size, 2)
        torch.nn.init.normal_(self.head.weight, generator=torch.Generator().manual_seed(0))
    def embed(self, ids): return self.m.get_input_embeddings()(ids)
    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        h = self.m(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return self.head((h * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True))


def best_time(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/bench_explain.json")
    args = ap.parse_args()
    from captum.attr import IntegratedGradients
    from alignnb.hf import load_minilm
    from alignnb.explain.attribution import _baseline_embeds, integrated_gradients, margin
    torch.set_num_threads(1)
    model = MiniLMHead(*load_minilm()).eval()
    _, tok = load_minilm()
    n_sent, steps = (2, 16) if args.quick else (8, 50)
    texts = ["The film was not good but the music was lovely.", "A man is playing a guitar on stage.",
             "Python lists can be sorted in place.", "The weather today is cold and wet."] * 2
    enc = tok(texts[:n_sent], return_tensors="pt", padding=True)
    ids, mask = enc.input_ids, enc.attention_mask
    y = torch.zeros(len(ids), dtype=torch.long)
    batch = steps * len(ids)  # one pass for the whole path in both
    ours_s, ours = best_time(lambda: integrated_gradients(model, ids, y, mask, n_steps=steps, batch_size=batch), 2)
    ig = IntegratedGradients(lambda e, m, t: margin(model(inputs_embeds=e, attention_mask=m), t))
    base = _baseline_embeds(model, ids, "pad")
    theirs_s, theirs = best_time(lambda: ig.attribute(model.embed(ids).detach(), baselines=base, n_steps=steps,
                                                      additional_forward_args=(mask, y), internal_batch_size=batch), 2)
    diff = (ours - theirs.sum(-1) * mask).abs().max().item()
    record = dict(quick=args.quick, sentences=n_sent, n_steps=steps, rule="gausslegendre", ours_s=ours_s,
                  captum_s=theirs_s, ratio_ours_over_captum=ours_s / theirs_s, max_abs_difference=diff,
                  max_abs_score=ours.abs().max().item(),
                  torch=torch.__version__, machine=platform.machine(), cpus=os.cpu_count(),
                  load_average=os.getloadavg()[0])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
