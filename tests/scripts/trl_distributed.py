"""Run by tests/test_distributed.py. `record`: under `accelerate launch --num_processes 2 --cpu` (gloo), train a tiny
GPT-2 with Nash-MD-PG on alignnb's TRL trainer for a few steps, record every sampled batch, save each rank's final
parameters, and evaluate the calibration metrics on per-rank shards. `replay`: one process, twice the per-device
batch, the two ranks' samples of each step concatenated in place of its own generation; save its parameters."""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignnb.calibration import BinnedCalibrationError, KernelCalibrationError
from alignnb.lm import Generation
from alignnb.preference import MajorityJudge, OnlinePreferenceConfig, OnlinePreferenceTrainer, summary_task

STEPS, PER_RANK, RANKS = 3, 2, 2


def _trainer(model_path: str, workdir: Path, batch: int) -> OnlinePreferenceTrainer:
    prompts, documents = summary_task()
    args = OnlinePreferenceConfig(output_dir=str(workdir / "out"), method="nash_md_pg", beta=1.0, mixture_coef=0.25,
                                  per_device_train_batch_size=batch, max_new_tokens=6, max_steps=STEPS,
                                  optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", logging_steps=1,
                                  report_to="none", use_cpu=True, bf16=False, save_strategy="no", seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return OnlinePreferenceTrainer(model, MajorityJudge(documents), args, Dataset.from_dict({"prompt": prompts[:24]}),
                                   tokenizer)


def _prompt_width(g: Generation) -> int:
    "Columns of the (left-padded) prompt block: the first column where some completion starts."
    return int(g.completion_mask.any(0).float().argmax())


def _pad(g: Generation, prompt_width: int, completion_width: int, pad: int) -> Generation:
    "`g` left-padded to `prompt_width` prompt columns and right-padded to `completion_width` completion columns."
    width = _prompt_width(g)
    left, right = prompt_width - width, completion_width - (g.sequences.shape[1] - width)
    grow = lambda x, value: F.pad(x, (left, right), value=value)
    return Generation(grow(g.sequences, pad), grow(g.attention_mask, 0), grow(g.completion_mask, 0),
                      g.prompt_lengths, g.texts)


def _concat(parts: list[Generation], pad: int) -> Generation:
    "The rows of several generations (each with its own padding) as one batch."
    pw = max(_prompt_width(g) for g in parts)
    cw = max(g.sequences.shape[1] - _prompt_width(g) for g in parts)
    parts = [_pad(g, pw, cw, pad) for g in parts]
    return Generation(*(torch.cat([getattr(g, k) for g in parts]) for k in
                        ("sequences", "attention_mask", "completion_mask", "prompt_lengths")),
                      [t for g in parts for t in g.texts])


def record(model_path: str, workdir: Path):
    trainer = _trainer(model_path, workdir, PER_RANK)
    acc, calls, sample = trainer.accelerator, [], trainer._sample
    assert acc.num_processes == RANKS, f"expected {RANKS} processes, got {acc.num_processes}"
    backend = torch.distributed.get_backend()
    assert backend == "gloo" and acc.device.type == "cpu", f"expected gloo on the CPU, got {backend} on {acc.device}"

    def recording(model, prompts, mixture):
        g = sample(model, prompts, mixture)
        calls.append({"prompts": list(prompts), "mixture": mixture,
                      **{k: getattr(g, k).cpu() for k in ("sequences", "attention_mask", "completion_mask",
                                                           "prompt_lengths")}, "texts": g.texts})
        return g
    trainer._sample = recording
    trainer.train()
    rank = acc.process_index
    torch.save({k: v.detach().cpu() for k, v in acc.unwrap_model(trainer.model).state_dict().items()},
               workdir / f"params_rank{rank}.pt")
    torch.save(calls, workdir / f"calls_rank{rank}.pt")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1001, 5)) * 3
    labels = rng.integers(0, 5, size=1001)
    values = {}
    for name, metric in (("binned", BinnedCalibrationError(5, from_logits=True)),
                         ("binned_l2_classwise", BinnedCalibrationError(5, norm="l2", mode="classwise", debias=True,
                                                                       from_logits=True)),
                         ("kernel", KernelCalibrationError(5, from_logits=True))):
        metric.update(torch.tensor(logits[rank::RANKS]), torch.tensor(labels[rank::RANKS]))  # 501 and 500 rows
        values[name] = float(metric.compute())
    torch.save(values, workdir / f"metrics_rank{rank}.pt")
    acc.wait_for_everyone()  # every rank's files are written before any rank leaves
    torch.distributed.destroy_process_group()  # gloo's threads joined here, not torn down at interpreter exit


def replay(model_path: str, workdir: Path):
    trainer = _trainer(model_path, workdir, PER_RANK * RANKS)
    ranks = [torch.load(workdir / f"calls_rank{r}.pt", weights_only=False) for r in range(RANKS)]
    counter = iter(range(10**6))
    pad = trainer._tokenizer.pad_token_id

    def replaying(model, prompts, mixture):
        k = next(counter)
        parts = [calls[k] for calls in ranks]
        expected = [p for part in parts for p in part["prompts"]]
        if list(prompts) != expected or any(part["mixture"] != mixture for part in parts):
            raise AssertionError(f"call {k}: prompts {prompts} but the ranks sampled for {expected}")
        return _concat([Generation(part["sequences"], part["attention_mask"], part["completion_mask"],
                                   part["prompt_lengths"], part["texts"]) for part in parts], pad)
    trainer._sample = replaying
    trainer.train()
    torch.save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, workdir / "params_single.pt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("record", "replay"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--workdir", required=True)
    a = parser.parse_args()
    torch.set_num_threads(1)
    (record if a.mode == "record" else replay)(a.model, Path(a.workdir))
    # Everything this script reports is in its files, already written and closed. Leave without the interpreter's
    # teardown: a rank once died there with 'terminate called without an active exception' (SIGABRT) after its work
    # was done, failing the launch at random.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
