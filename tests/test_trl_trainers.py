"""alignnb's TRL preference trainer (online IPO, IPO-MD, Nash-MD-PG on TRL's online DPO trainer) against the
single-process loop of alignnb.preference.online: same loss and gradients at the first step on the same prompts
and completions; its own sampling checked token by token and for the geometric mixture."""
import copy
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from tiny_lm import save_tiny_gpt2  # noqa: E402

import alignnb.preference.online as online  # noqa: E402
from alignnb.lm import generate  # noqa: E402
from alignnb.preference import MajorityJudge, OnlinePreferenceConfig, OnlinePreferenceTrainer, summary_task  # noqa


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    path = save_tiny_gpt2(tmp_path_factory.mktemp("tiny") / "model")
    prompts, documents = summary_task()
    return path, AutoTokenizer.from_pretrained(path), prompts[:6], MajorityJudge(documents), tmp_path_factory


def _models(path, shift: float = 0.05):
    "pi_ref and a policy that differs from it (so log-ratios and the KL term are not zero)."
    reference = AutoModelForCausalLM.from_pretrained(path).eval().requires_grad_(False)
    policy = AutoModelForCausalLM.from_pretrained(path)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in policy.parameters(): p.add_(shift * torch.randn(p.shape, generator=g))
    return policy, reference


def _config(tmp, **kw):
    return OnlinePreferenceConfig(output_dir=str(tmp.mktemp("out")), report_to="none", use_cpu=True, bf16=False,
                                  save_strategy="no", **kw)


@pytest.mark.parametrize("method,beta", [("ipo", 0.0), ("ipo_md", 0.3), ("nash_md_pg", 0.3), ("dpo", 0.0)])
def test_first_step_matches_the_single_process_loop(setup, method, beta, monkeypatch):
    path, tok, prompts, judge, tmp = setup
    ours, reference = _models(path)
    theirs = copy.deepcopy(ours)
    recorded, sample = [], online._sample

    def record(*args, **kwargs):
        recorded.append(sample(*args, **kwargs))
        return recorded[-1]
    monkeypatch.setattr(online, "_sample", record)
    loss, _ = online.preference_step_loss(method, ours.eval(), reference, tok, prompts[:4], judge, 0.5, beta, 8,
                                          torch.Generator().manual_seed(0))
    loss.backward()
    assert len(recorded) == (2 if method == "nash_md_pg" else 1)
    replay = list(recorded)
    trainer = OnlinePreferenceTrainer(theirs, judge, _config(tmp, method=method, beta=0.5, mixture_coef=beta),
                                      Dataset.from_dict({"prompt": prompts}), tok, ref_model=reference)
    trainer._sample = lambda model, batch, mixture: replay.pop(0)
    their_loss = trainer.training_step(trainer.model, {"prompt": prompts[:4]})
    assert not replay
    assert float(their_loss) == pytest.approx(float(loss), rel=1e-6, abs=1e-9)
    n_grads = 0
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        if a.grad is None:
            assert b.grad is None or not b.grad.any(), name
            continue
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7)
        n_grads += 1
    assert n_grads > 10 and any(a.grad.abs().max() > 1e-3 for a in ours.parameters() if a.grad is not None)


def test_own_sampling_gives_the_loops_log_probabilities(setup):
    "The trainer's Generation (TRL-style generation, left padding) scores as each row does alone, token by token."
    path, tok, prompts, judge, tmp = setup
    policy, reference = _models(path)
    trainer = OnlinePreferenceTrainer(policy, judge, _config(tmp, max_new_tokens=6),
                                      Dataset.from_dict({"prompt": prompts}), tok, ref_model=reference)
    g = trainer._sample(trainer.model, prompts[:4], mixture=False)
    from alignnb.lm import sequence_logprobs
    batched = sequence_logprobs(policy.eval(), g.sequences, g.attention_mask, g.prompt_lengths)
    for i in range(4):
        ids = g.sequences[i][g.attention_mask[i].bool()]  # the row without padding
        start = int(g.prompt_lengths[i])
        with torch.no_grad():
            logp = torch.log_softmax(policy(ids[None]).logits[0, :-1].double(), -1)
        alone = logp[torch.arange(start - 1, len(ids) - 1), ids[start:]].sum()
        assert float(batched[i]) == pytest.approx(float(alone), abs=1e-4)
        assert g.texts[i] == tok.decode(ids[start:], skip_special_tokens=True)
        assert int(g.completion_mask[i].sum()) == len(ids) - start


def test_mixture_sampling_is_wired(setup):
    "beta = 1: the mixture is pi_ref, so greedy decoding through it is pi_ref's greedy completion."
    path, tok, prompts, judge, tmp = setup
    policy, reference = _models(path, shift=0.5)
    cfg = _config(tmp, method="nash_md_pg", mixture_coef=1.0, max_new_tokens=6, generation_kwargs={"do_sample": False})
    trainer = OnlinePreferenceTrainer(policy, judge, cfg, Dataset.from_dict({"prompt": prompts}), tok,
                                      ref_model=reference)
    mixed = trainer._sample(trainer.model, prompts[:4], mixture=True).texts
    own = trainer._sample(trainer.model, prompts[:4], mixture=False).texts
    assert mixed == generate(reference, tok, prompts[:4], max_new_tokens=6, temperature=0).texts
    assert own == generate(policy.eval(), tok, prompts[:4], max_new_tokens=6, temperature=0).texts
    assert mixed != own  # the two models differ, so the check can tell them apart


def test_trains_and_logs(setup):
    path, tok, prompts, judge, tmp = setup
    policy, reference = _models(path)
    start = copy.deepcopy(policy.state_dict())
    cfg = _config(tmp, method="ipo_md", mixture_coef=0.25, per_device_train_batch_size=2, max_new_tokens=6,
                  max_steps=2, logging_steps=1, learning_rate=1e-2)
    trainer = OnlinePreferenceTrainer(policy, judge, cfg, Dataset.from_dict({"prompt": prompts}), tok)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss/preference" in e]
    assert len(logs) == 2 and all(torch.isfinite(torch.tensor(e["loss/preference"])) for e in logs)
    assert any(not torch.equal(start[k], v) for k, v in policy.state_dict().items())


def test_bad_arguments(setup):
    path, tok, prompts, judge, tmp = setup
    with pytest.raises(ValueError, match="method must be one of"):
        _config(tmp, method="kto")
    with pytest.raises(ValueError, match="mixture_coef"):
        _config(tmp, mixture_coef=-0.1)
    policy, _ = _models(path)
    with pytest.raises(TypeError, match="preference must be callable"):
        OnlinePreferenceTrainer(policy, None, _config(tmp), Dataset.from_dict({"prompt": prompts}), tok)
    trainer = OnlinePreferenceTrainer(policy, lambda p, a, b: [0.5], _config(tmp, max_new_tokens=4),
                                      Dataset.from_dict({"prompt": prompts}), tok)
    with pytest.raises(ValueError, match="probabilities"):
        trainer.training_step(trainer.model, {"prompt": prompts[:3]})
