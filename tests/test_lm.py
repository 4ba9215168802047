"""Cross-checks of alignnb.lm against direct computations and Hugging Face's own implementations."""
import json, math, subprocess, sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from alignnb.data import data_samples_dir
from alignnb.lm import (GeometricMixture, _positions, generate, load_small_lm, ngram_perplexities, perplexity,
                        sample_next_token, sequence_logprobs, validation_windows)

LM_DIR = data_samples_dir() / "lm"


@pytest.fixture(scope="module")
def small_lm():
    return load_small_lm(device="cpu")


def tiny_llama(seed=0):
    # a second architecture (rotary positions) shows the utilities work for any causal LM, and that positions matter
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    return GPT2LMHeadModel(cfg).eval()


def direct_logprob(model, ids, prompt_length):
    # (2) literally: one unpadded row, one forward pass per completion token
    total = 0.0
    for t in range(prompt_length, len(ids)):
        logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1].double()
        total += torch.log_softmax(logits, -1)[ids[t]].item()
    return total


def pad_batch(rows, side, pad_id=1):
    width = max(map(len, rows))
    fill = lambda r, v: [v] * (width - len(r)) + r if side == "left" else r + [v] * (width - len(r))
    return torch.tensor([fill(r, pad_id) for r in rows]), torch.tensor([fill([1] * len(r), 0) for r in rows])


def test_checkpoint_loads_in_a_fresh_process():
    code = f"""
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained({str(LM_DIR)!r}, dtype=torch.float32).eval()
t = AutoTokenizer.from_pretrained({str(LM_DIR)!r})
text = "Return a list of the words in the string, using sep as the delimiter string. If maxsplit is given, at most maxsplit splits are done."
ids = t(text, return_tensors="pt")["input_ids"]
loss = m(input_ids=ids, labels=ids).loss.item()
print(json.dumps(dict(cls=type(m).__name__, decoded=t.decode(ids[0]), loss=loss, pad=t.pad_token_id, eos=t.eos_token_id)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["cls"] == "GPT2LMHeadModel" and info["decoded"].startswith("Return a list of the words")
    assert info["loss"] < math.log(300)  # an untrained model sits near log(4096); the unigram near log(760)
    assert info["pad"] != info["eos"]
    assert (LM_DIR / "model.safetensors").stat().st_size < 5e6


def test_logged_perplexity_beats_the_bigram():
    log = json.loads((LM_DIR / "training_log.json").read_text())
    assert log["model"] < 0.8 * log["bigram"] < log["unigram"]


@pytest.mark.parametrize("make_model", [tiny_gpt2, tiny_llama])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_sequence_logprobs_matches_direct_computation_with_any_padding(make_model, data):
    model = make_model()
    lengths = data.draw(st.lists(st.integers(2, 9), min_size=1, max_size=4))
    rows = [data.draw(st.lists(st.integers(2, 49), min_size=n, max_size=n)) for n in lengths]
    prompts = torch.tensor([data.draw(st.integers(1, n - 1)) for n in lengths])
    expected = torch.tensor([direct_logprob(model, r, int(p)) for r, p in zip(rows, prompts)], dtype=torch.float64)
    with torch.no_grad():
        for side in ("left", "right"):
            ids, mask = pad_batch(rows, side)
            got = sequence_logprobs(model, ids, mask, prompts)
            assert torch.allclose(got.double(), expected, atol=1e-4), (side, got, expected)
            mean = sequence_logprobs(model, ids, mask, prompts, reduce="mean")
            assert torch.allclose(mean.double(), expected / (torch.tensor(lengths) - prompts).double(), atol=1e-4)


def test_left_padding_without_position_ids_would_be_wrong():
    # the regression the position ids guard against: GPT-2 with left padding and default positions differs
    model = tiny_gpt2()
    ids, mask = pad_batch([[5, 6, 7, 8, 9, 10], [11, 12, 13]], "left")
    with torch.no_grad():
        ours = sequence_logprobs(model, ids, mask, torch.tensor([2, 1]))
        naive = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[1, -3:-1], -1)
        naive = naive.gather(-1, ids[1, -2:, None]).sum()
    assert abs(ours[1].item() - direct_logprob(model, [11, 12, 13], 1)) < 1e-4
    assert abs(naive.item() - ours[1].item()) > 1e-3


def test_perplexity_matches_hugging_face_loss(small_lm):
    model, tokenizer = small_lm
    stream = torch.tensor(tokenizer("Return a new list containing all items from the iterable in ascending order. " * 8)["input_ids"])
    inputs, targets = validation_windows(stream, 32)
    with torch.no_grad():
        window = torch.cat([inputs, targets[:, -1:]], 1)  # (W, T + 1): HF shifts the labels itself
        hf_loss = model(input_ids=window, labels=window).loss.item()
    assert abs(math.log(perplexity(model, inputs, targets)) - hf_loss) < 1e-4


def test_ngram_perplexities_brute_force():
    g = torch.Generator().manual_seed(0)
    train, valid = torch.randint(0, 6, (400,), generator=g), torch.randint(0, 6, (41,), generator=g)
    inputs, targets = validation_windows(valid, 10)
    res = ngram_perplexities(train, inputs, targets, 6, lambdas=(0.7,))
    counts = {}
    for a, b in zip(train[:-1].tolist(), train[1:].tolist()): counts[(a, b)] = counts.get((a, b), 0) + 1
    left = {v: sum(c for (a, _), c in counts.items() if a == v) for v in range(6)}
    uni = [(train.tolist().count(w) + 1) / (len(train) + 6) for w in range(6)]
    nll_u = nll_b = 0.0
    for v, w in zip(inputs.flatten().tolist(), targets.flatten().tolist()):
        nll_u -= math.log(uni[w])
        nll_b -= math.log(0.7 * counts.get((v, w), 0) / left[v] + 0.3 * uni[w] if left[v] else uni[w])
    n = targets.numel()
    assert abs(res["unigram"] - math.exp(nll_u / n)) < 1e-9 and abs(res["bigram"] - math.exp(nll_b / n)) < 1e-9


def test_nucleus_sampling_frequencies():
    scores = torch.tensor([[1.5, 1.0, 0.5, 0.0, -3.0]])
    probs = torch.softmax(scores / 0.7, -1)[0]
    keep = (probs.cumsum(0) - probs) < 0.9  # nucleus: tokens whose preceding mass is below top_p
    target = torch.where(keep, probs, 0.0); target /= target.sum()
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next_token(scores.expand(500, -1), 0.7, 0.9, g) for _ in range(8)])
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    assert torch.allclose(freq, target.double(), atol=0.02), (freq, target)


def test_generate_is_deterministic_and_matches_hf_greedy_with_left_padding(small_lm):
    model, tokenizer = small_lm
    prompts = ["The socket module", "Raise an exception if the argument is not a string and", "A"]
    a = generate(model, tokenizer, prompts, 12, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = generate(model, tokenizer, prompts, 12, temperature=1.0, generator=torch.Generator().manual_seed(3))
    c = generate(model, tokenizer, prompts, 12, temperature=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.sequences, b.sequences) and not torch.equal(a.sequences, c.sequences)
    greedy = generate(model, tokenizer, prompts, 10, temperature=0)
    width = greedy.sequences.shape[1] - 10
    enc = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    hf = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    for i in range(len(prompts)):  # HF continues after eos with pad; compare up to our first eos
        ours = greedy.sequences[i, width:][greedy.completion_mask[i, width:].bool()].tolist()
        assert hf[i, enc["input_ids"].shape[1]:].tolist()[: len(ours)] == ours


def test_geometric_mixture_equals_closed_form_and_works_in_hf_generate():
    policy, reference = tiny_llama(0), tiny_llama(1)
    ids, mask = pad_batch([[5, 6, 7, 8], [9, 10]], "left")
    beta = 0.3
    with torch.no_grad():
        pos = _positions(mask)
        lp = torch.log_softmax(policy(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].double(), -1)
        lr = torch.log_softmax(reference(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].double(), -1)
        unnormalised = torch.exp((1 - beta) * lp + beta * lr)
        expected = (unnormalised / unnormalised.sum(-1, keepdim=True)).log()
        got = GeometricMixture(reference, beta, pad_token_id=1)(ids, policy(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1])
    assert torch.allclose(got.double(), expected, atol=1e-5)
    processor = GeometricMixture(reference, 0.5, pad_token_id=1)
    out = policy.generate(torch.tensor([[5, 6, 7]]), attention_mask=torch.ones(1, 3, dtype=torch.long), max_new_tokens=4,
                          do_sample=False, logits_processor=LogitsProcessorList([processor]), pad_token_id=1)
    seq = out[0].tolist()
    with torch.no_grad():  # each greedy step is the argmax of the uncached mixture
        for t in range(3, len(seq)):
            x = torch.tensor([seq[:t]])
            mix = 0.5 * torch.log_softmax(policy(input_ids=x).logits[0, -1], -1) + 0.5 * torch.log_softmax(reference(input_ids=x).logits[0, -1], -1)
            assert mix.argmax().item() == seq[t]


def test_bad_inputs_raise():
    model = tiny_gpt2()
    ids, mask = pad_batch([[5, 6, 7], [8, 9]], "right")
    with pytest.raises(ValueError, match="prompt_lengths must lie in"): sequence_logprobs(model, ids, mask, torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="input_ids must be"): sequence_logprobs(model, ids[0], mask[0], torch.tensor([1]))
    with pytest.raises(ValueError, match="beta must lie"): GeometricMixture(model, -0.1, 1)
