"""alignnb.explain attention, global methods and the MiniLM similarity attribution: references, identities, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alignnb.explain.attention import (attention_rollout, best_counterfactual, counterfactual_edits, raw_attention,
                                       value_zeroing, value_zeroing_matrix)
from alignnb.explain.attribution import VOCAB, load_classifier, margin, rationale_task
from alignnb.explain.global_methods import (demonstration_attribution, logit_lens, probe_accuracy,
                                            similarity_integrated_gradients)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clf():
    task = rationale_task(5, seed=8)
    return load_classifier(), task


def test_rollout_of_a_one_layer_identity_is_the_cls_row(clf):
    "With attention maps replaced by I, rollout is the one-hot of [CLS]; with uniform maps it is computable by hand."
    model, task = clf
    out = model.run(task.input_ids, task.attention_mask)
    T = task.input_ids.shape[1]
    R = torch.eye(T).expand(len(task), T, T)
    for a in out.attentions:
        a = 0.5 * a.mean(1) + 0.5 * torch.eye(T)
        R = torch.bmm(a / a.sum(-1, keepdim=True), R)
    torch.testing.assert_close(attention_rollout(model, task.input_ids, task.labels, task.attention_mask),
                               R[:, 0].detach() * task.attention_mask)


def test_value_zeroing_rows_are_distributions_and_zero_on_padding(clf):
    model, task = clf
    C = value_zeroing_matrix(model, task.input_ids, task.attention_mask, 0)
    m = task.attention_mask.bool()
    torch.testing.assert_close(C.sum(-1)[m], torch.ones(int(m.sum())), atol=1e-5, rtol=0)
    assert (C[~m[:, None, :].expand_as(C)] == 0).all() and (C >= 0).all()
    s = value_zeroing(model, task.input_ids, task.labels, task.attention_mask)
    torch.testing.assert_close(s.sum(-1), torch.ones(len(task)), atol=1e-5, rtol=0)


def test_counterfactual_is_real_and_maximal(clf):
    "The reported edit reproduces its margin, and no single substitution lowers the margin further (brute force)."
    model, task = clf
    ids, mask, y = task.input_ids[:1], task.attention_mask[:1], task.labels[:1]
    cf = best_counterfactual(model, ids, y, mask)
    best = np.inf
    for t in range(1, int(mask.sum())):
        for w in range(2, len(VOCAB)):
            e = ids.clone()
            e[0, t] = w
            with torch.no_grad(): best = min(best, margin(model(e, mask), y).item())
    assert abs(cf.margin_after - best) < 1e-4
    scores = counterfactual_edits(model, ids, y, mask)[0]
    assert abs(scores.max().item() - (cf.margin_before - best)) < 1e-4


def test_raw_attention_is_a_distribution(clf):
    model, task = clf
    torch.testing.assert_close(raw_attention(model, task.input_ids, task.labels, task.attention_mask).sum(-1),
                               torch.ones(len(task)))


def test_probe_beats_shuffled_control_on_a_separable_property():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 10))
    y = (X[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    train = np.arange(400) < 300
    assert probe_accuracy(X, y, train).mean() > 0.85
    assert probe_accuracy(X, y, train, shuffle_seed=1).mean() < 0.7
    with pytest.raises(ValueError, match="must agree"): probe_accuracy(X, y[:10], train)


@pytest.fixture(scope="module")
def small_lm():
    from alignnb.lm import load_small_lm
    return load_small_lm("cpu")


def test_logit_lens_last_layer_is_the_model_output(small_lm):
    lm, tok = small_lm
    ids = tok("def f(x): return x", return_tensors="pt").input_ids
    lens = logit_lens(lm, ids)
    with torch.no_grad(): torch.testing.assert_close(lens[-1], lm(ids).logits.log_softmax(-1))
    assert lens.shape[0] == lm.config.n_layer + 1


def test_demonstration_attribution_is_leave_one_out(small_lm):
    lm, tok = small_lm
    demos, query, answer = ["a = len(x)", "b = sorted(x)"], "c =", " len"
    def logp(d):
        p = tok("\n".join(d + [query]), return_tensors="pt").input_ids
        a = tok(answer, return_tensors="pt").input_ids
        with torch.no_grad(): lp = lm(torch.cat([p, a], 1)).logits.log_softmax(-1)[0]
        return sum(lp[p.shape[1] - 1 + i, a[0, i]].item() for i in range(a.shape[1]))
    phi = demonstration_attribution(lm, tok, demos, query, answer)
    np.testing.assert_allclose(phi, [logp(demos) - logp(demos[1:]), logp(demos) - logp(demos[:1])], atol=1e-5)
    with pytest.raises(ValueError, match="at least one"): demonstration_attribution(lm, tok, [], query, answer)


def test_similarity_attribution_on_minilm_is_complete():
    "Scores over both sentences sum to cos(x) - cos(baseline) within the delta; cos is sentence-transformers' score."
    from alignnb.hf import load_minilm
    model, tok = load_minilm()
    a, b = "A cat sits on the mat.", "A kitten rests on a rug."
    att = similarity_integrated_gradients(model, tok, a, b, n_steps=48)
    total = att.scores[0].sum() + att.scores[1].sum()
    assert abs(total - (att.similarity - att.baseline_similarity) - att.delta) < 1e-5
    assert abs(att.delta) < 0.02 * abs(att.similarity - att.baseline_similarity)
    enc = [tok(s, return_tensors="pt") for s in (a, b)]
    with torch.no_grad():
        pooled = [(model(**e).last_hidden_state * e.attention_mask[..., None]).sum(1) / e.attention_mask.sum()
                  for e in enc]
    assert abs(F.cosine_similarity(*pooled).item() - att.similarity) < 1e-5
    assert len(att.scores[0]) == len(att.tokens[0]) and len(att.scores[1]) == len(att.tokens[1])
