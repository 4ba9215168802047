"""TRL's GRPOTrainer trained with alignnb's LSC and sum-as-AND reward functions logs the rewards we compute by hand
on the completions it generated."""
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from tiny_lm import save_tiny_gpt2  # noqa: E402

from alignnb.rewards import (LSCReward, combine_rewards, load_reference_rewards, load_reward_task,  # noqa: E402
                             reference_rewards, save_reference_rewards, sum_as_and)


class Recorder:
    "A raw reward that records every (prompt, completion) it scores."
    def __init__(self, fn, name):
        self.fn, self.__name__, self.calls = fn, name, []

    def __call__(self, prompts, completions):
        self.calls.append((list(prompts), list(completions)))
        return self.fn(prompts, completions)


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    torch.set_num_threads(1)
    task = load_reward_task()
    prompts = task.prompts[:4]
    helpful, harmless = Recorder(task.helpfulness, "helpfulness"), Recorder(task.harmlessness, "harmlessness")
    funcs = sum_as_and({"helpfulness": helpful, "harmlessness": harmless}, prompts, task.reference_responses[:4])
    helpful.calls.clear()
    harmless.calls.clear()
    path = save_tiny_gpt2(tmp_path_factory.mktemp("tiny") / "policy")
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), num_generations=2,
                      per_device_train_batch_size=4, max_completion_length=8, max_steps=2, logging_steps=1,
                      report_to="none", use_cpu=True, seed=0, save_strategy="no", learning_rate=1e-3)
    trainer = GRPOTrainer(model=str(path), reward_funcs=funcs, args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts * 4}),
                          processing_class=AutoTokenizer.from_pretrained(path))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "rewards/lsc_helpfulness/mean" in entry]
    return task, funcs, helpful, harmless, logs


def test_grpo_logs_our_rewards(grpo_run):
    task, funcs, helpful, harmless, logs = grpo_run
    assert len(logs) == 2 and len(helpful.calls) == 2 and len(harmless.calls) == 2  # one scoring per step
    for log, (prompts, completions), (prompts2, completions2) in zip(logs, helpful.calls, harmless.calls):
        assert (prompts, completions) == (prompts2, completions2)
        assert len(completions) == 4  # per_device_train_batch_size counts completions: 2 prompts x 2
        n = len(completions)
        # by hand, from the raw ground truth and the stored tables
        u_help = [_log_sigmoid(float(r) - funcs[0].r_ref[p])
                  for p, r in zip(prompts, task.helpfulness(prompts, completions))]
        u_harm = [_log_sigmoid(float(r) - funcs[1].r_ref[p])
                  for p, r in zip(prompts, task.harmlessness(prompts, completions))]
        assert log["rewards/lsc_helpfulness/mean"] == pytest.approx(sum(u_help) / n, abs=1e-5)
        assert log["rewards/lsc_harmlessness/mean"] == pytest.approx(sum(u_harm) / n, abs=1e-5)
        # the trainer's summed reward is the sum-as-AND utility (7) of the transform page
        raw = torch.stack([task.helpfulness(prompts, completions), task.harmlessness(prompts, completions)], -1)
        refs = torch.tensor([[f.r_ref[p] for f in funcs] for p in prompts], dtype=torch.float64)
        assert log["reward"] == pytest.approx(float(combine_rewards(raw, refs, how="lsc").mean()), abs=1e-5)


def test_reference_table_is_the_papers_quantile(tmp_path):
    task = load_reward_task()
    table = reference_rewards(task.helpfulness, task.prompts[:3], task.reference_responses[:3], method="empirical")
    for p, samples in zip(task.prompts[:3], task.reference_responses[:3]):
        r = sorted(float(x) for x in task.helpfulness([p] * len(samples), samples))
        pos = 0.85 * (len(r) - 1)  # linear interpolation between order statistics
        lo = math.floor(pos)
        assert table[p] == pytest.approx(r[lo] + (pos - lo) * (r[min(lo + 1, len(r) - 1)] - r[lo]), abs=1e-9)
    path = save_reference_rewards(table, tmp_path / "r_ref.json", quantile=0.85)
    assert load_reference_rewards(path) == table


def test_conversational_prompts_and_bad_input():
    table = {"hello": 1.0}
    f = LSCReward(lambda p, c: [len(x) for x in c], table, name="lsc_len")
    out = f(prompts=[[{"role": "user", "content": "hello"}]], completions=[[{"role": "assistant", "content": "abc"}]])
    assert out == pytest.approx([_log_sigmoid(3.0 - 1.0)])
    with pytest.raises(KeyError, match="no r_ref"):
        f(prompts=["bye"], completions=["x"])
    with pytest.raises(ValueError, match="one reward per completion"):
        LSCReward(lambda p, c: [1.0, 2.0], table)(prompts=["hello"], completions=["x"])
    with pytest.raises(ValueError, match="NaN or inf"):
        LSCReward(lambda p, c: [float("nan")], table)(prompts=["hello"], completions=["x"])
    with pytest.raises(TypeError, match="callable"):
        LSCReward(3, table)
