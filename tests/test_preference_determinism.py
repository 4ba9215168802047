"""The token-level preference path gives identical numbers in separate processes (no set-order or process-state dependence)."""
import json, os, subprocess, sys

_SLICE = r'''
import copy, json, torch
from alignnb.core import seed_everything
from alignnb.lm import load_small_lm
from alignnb.preference import (MajorityJudge, PreferenceModel, fit_preference_model, online_preference_optimisation,
                                summary_task, win_rate_table)
from alignnb.preference.online import _agreement, _labelled_reference_pairs
torch.set_num_threads(1)
generator = seed_everything(0)
reference, tokenizer = load_small_lm(device="cpu")
prompts, documents = summary_task()
train, held = prompts[:8], prompts[-4:]
judge = MajorityJudge(documents)
pairs = _labelled_reference_pairs(reference, tokenizer, train, judge, 1, 6, generator)
held_out = _labelled_reference_pairs(reference, tokenizer, held, judge, 1, 6, generator)
model = PreferenceModel(reference, tokenizer)
losses = fit_preference_model(model, *pairs, steps=20)
policy = copy.deepcopy(reference)
log = online_preference_optimisation(policy, reference, tokenizer, train, model, "ipo_md", beta=0.125, steps=1, batch_size=2,
                                     max_new_tokens=6, seed=0)
table = win_rate_table({"sft": reference, "ipo_md": policy}, tokenizer, held, judge, 1, 6, 0)
print(json.dumps({"texts": pairs[1] + held_out[1], "fit": losses[-1], "agreement": _agreement(model, judge, *held_out[:3]),
                  "log": log, "win": float(table.loc["ipo_md", "sft"])}))
'''

def _run(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "ALIGNNB_QUIET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    out = subprocess.run([sys.executable, "-c", _SLICE], env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

def test_token_level_slice_is_identical_across_processes():
    "A slice of the token-level path (sampling, preference fit, one IPO-MD step, win rate) gives the same numbers "
    "in two fresh processes with different hash seeds: nothing depends on set order or process state."
    assert _run("1") == _run("2")
