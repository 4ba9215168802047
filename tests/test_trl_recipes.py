"""The "Using it" recipes of the three TRL / accelerate pages run against the installed TRL, transformers, accelerate and
torchmetrics: each page's python block, with its placeholder paths pointed at tiny local models, a one-step budget and
CPU settings (TRL's configurations default to bf16, which a CPU cannot run)."""
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "scripts"))
from tiny_lm import save_tiny_gpt2  # noqa: E402

CPU_ONE_STEP = 'max_steps=1, use_cpu=True, bf16=False, report_to="none", save_strategy="no",'


def recipe(notebook: str) -> str:
    "The python block of the page's 'Using it' section."
    cells = json.loads((ROOT / notebook).read_text())["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown" and
                   "".join(c["source"]).lstrip().startswith("## Using it"))
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, f"{notebook}: expected one python block under 'Using it', found {len(blocks)}"
    return blocks[0]


def _run(code: str, namespace: dict, where: Path):
    old = os.getcwd()
    os.chdir(where)
    try: exec(compile(code, "recipe", "exec"), namespace)
    finally: os.chdir(old)
    return namespace


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoTokenizer, GPT2ForSequenceClassification
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("recipes")
    policy = save_tiny_gpt2(root / "policy")
    config = GPT2ForSequenceClassification.config_class.from_pretrained(policy)
    paths = {}
    for name, labels in (("reward_model", 1), ("classifier", 3)):
        config.num_labels = labels
        torch.manual_seed(labels)
        GPT2ForSequenceClassification(config).save_pretrained(root / name)
        AutoTokenizer.from_pretrained(policy).save_pretrained(root / name)
        paths[name] = root / name
    return root, policy, paths


def test_rewards_recipe_runs(models):
    from alignnb.rewards import load_reward_task
    root, policy, paths = models
    code = recipe("nbs/10_rewards/03_trl.ipynb")
    code = code.replace("path/to/policy", str(policy)).replace("path/to/reward_model", str(paths["reward_model"]))
    code = code.replace("prompts = [...]", "prompts = PROMPTS").replace("[p] * 16", "[p] * 4").replace("K = 16", "")
    code = code.replace("max_new_tokens=64", "max_new_tokens=6").replace("max_completion_length=64",
                                                                        "max_completion_length=6")
    code = code.replace("logging_steps=10)", f"logging_steps=1, {CPU_ONE_STEP} per_device_train_batch_size=8)")
    ns = _run(code, {"PROMPTS": load_reward_task().prompts[:3]}, root)
    assert len(ns["r_ref"]) == 3 and (root / "run" / "r_ref.json").is_file()


def test_preference_recipe_runs(models):
    from alignnb.preference import summary_task
    root, policy, paths = models
    code = recipe("nbs/11_preference/03_trl.ipynb")
    code = code.replace("path/to/policy", str(policy)).replace("path/to/reward_model", str(paths["reward_model"]))
    code = code.replace("max_new_tokens=64", "max_new_tokens=6").replace("per_device_train_batch_size=8",
                                                                        "per_device_train_batch_size=2")
    code = code.replace("logging_steps=10)", f"logging_steps=1, {CPU_ONE_STEP})")
    ns = _run(code, {"prompts": summary_task()[0][:4]}, root)
    assert ns["trainer"].state.global_step == 1 and (root / "run" / "final" / "config.json").is_file()


def test_metrics_recipe_runs(models, capsys):
    from alignnb.calibration import binned_calibration_error
    from transformers import AutoTokenizer
    root, _, paths = models
    tok = AutoTokenizer.from_pretrained(paths["classifier"])
    texts = ["The return statement", "Exceptions are raised", "A module object", "The import system"] * 8
    test_set = [{"text": t, "label": i % 3} for i, t in enumerate(texts)]

    def collate(rows):
        enc = tok([r["text"] for r in rows], return_tensors="pt", padding=True)
        return {**enc, "labels": torch.tensor([r["label"] for r in rows])}
    code = recipe("nbs/40_calibration/07_metrics.ipynb").replace("path/to/classifier", str(paths["classifier"]))
    ns = _run(code, {"test_set": test_set, "collate": collate}, root)
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(paths["classifier"]).eval()
    with torch.no_grad():
        logits = torch.cat([model(**{k: v for k, v in collate(test_set[i:i + 64]).items() if k != "labels"}).logits
                            for i in range(0, len(test_set), 64)])
    expected = binned_calibration_error(logits.numpy(), [r["label"] for r in test_set], from_logits=True)
    assert float(ns["ece"].compute()) == pytest.approx(expected, abs=1e-6)
