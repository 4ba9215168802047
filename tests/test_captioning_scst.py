"Checks of SCST and the attribute-trained region features: the policy gradient against exact enumeration."
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.captioning.experiments import grounding
from alignnb.captioning.model import (ATTRIBUTES, Captioner, Vocab, fit_attribute_encoder, greedy_decode,
                                      scene_batch, with_features)
from alignnb.captioning.scst import sample_decode, scst_loss, scst_train, sequence_logprob
from alignnb.data import scenes


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    vocab = Vocab(["a b"])
    sc = scenes(1, seed=5)
    return vocab, sc, Captioner(len(vocab), "none", dim=8)


def _exact(model, scene_list, vocab, max_len=3):
    "Every caption of at most max_len tokens over {a, b, eos} with its probability, stepping the decoder by hand."
    A, B = vocab.stoi["a"], vocab.stoi["b"]
    seqs = [list(w) + [2] for k in range(max_len) for w in itertools.product((A, B), repeat=k)]
    seqs += [list(w) for w in itertools.product((A, B), repeat=max_len)]
    batch = scene_batch(scene_list, vocab, 5)
    v = model.regions(batch)
    out = []
    for y in seqs:
        state, word, lp = model.decoder.init_state(v), torch.ones(1, dtype=torch.long), 0.0
        for w in y:
            logp, state = model.decoder.step(word, v, batch.mask, state)
            allowed = torch.tensor([2, A, B])
            lp = lp + logp[0, w] - torch.logsumexp(logp[0, allowed], 0)  # renormalised over eos, a, b
            word = torch.tensor([w])
        out.append(lp)
    return seqs, torch.stack(out)


def test_sequence_logprob_matches_a_hand_stepped_decoder_and_sums_to_one(tiny):
    vocab, sc, m = tiny
    seqs, exact = _exact(m, sc, vocab)
    ids = torch.tensor([y + [0] * (3 - len(y)) for y in seqs])
    got = sequence_logprob(m, scene_batch(sc * len(seqs), vocab, 5), ids)
    torch.testing.assert_close(got, exact, atol=1e-5, rtol=1e-5)
    assert abs(float(exact.detach().exp().sum()) - 1) < 1e-5


def test_scst_gradient_is_unbiased_against_enumeration(tiny):
    vocab, sc, m = tiny
    seqs, exact = _exact(m, sc, vocab)
    reward = lambda y: float(sum(w == vocab.stoi["b"] for w in y)) + (2.0 if y[:1] == [2] else 0.0)
    m.zero_grad()
    (exact.exp() * torch.tensor([reward(y) for y in seqs])).sum().backward()
    want = torch.cat([p.grad.flatten() for p in m.decoder.parameters()])
    m.zero_grad()
    S = 20_000
    ids, logp = sample_decode(m, scene_batch(sc, vocab, 5), 3, n_samples=S, generator=torch.Generator().manual_seed(0))
    r = torch.tensor([reward([w for w in y if w]) for y in ids.tolist()])
    scst_loss(logp, r, torch.full((S,), 1.7)).backward()  # any constant baseline leaves the expectation unchanged
    got = -torch.cat([p.grad.flatten() for p in m.decoder.parameters()])
    m.zero_grad()
    assert float((got - want).abs().max()) < 0.05 * float(want.abs().max()) + 0.01
    assert float(torch.nn.functional.cosine_similarity(got, want, 0)) > 0.99


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 1000))
def test_sampled_log_probability_equals_the_teacher_forced_one(seed):
    sc = scenes(3, seed=seed)
    vocab = Vocab([c for s in sc for c in s.captions])
    torch.manual_seed(seed)
    m = Captioner(len(vocab), "spatial", dim=16)
    b = scene_batch(sc, vocab, 24)
    ids, lp = sample_decode(m, b, 12, n_samples=2, generator=torch.Generator().manual_seed(seed))
    rep = scene_batch([s for s in sc for _ in range(2)], vocab, 24)
    torch.testing.assert_close(sequence_logprob(m, rep, ids), lp, atol=1e-4, rtol=1e-4)
    assert not bool(((ids == 0) | (ids == 1) | (ids == 3))[:, :1].any())  # pad, bos, unk never drawn first


def test_scst_train_moves_the_policy_and_reports_a_trace():
    sc = scenes(12, seed=31)
    vocab = Vocab([c for s in sc for c in s.captions])
    torch.manual_seed(0)
    m = Captioner(len(vocab), "none", dim=16)
    b = [scene_batch(sc[:6], vocab, 24), scene_batch(sc[6:], vocab, 24)]
    before = [p.clone() for p in m.parameters()]
    trace = scst_train(m, b, vocab, epochs=2, max_len=10, n_samples=2)
    assert len(trace) == 2 and np.isfinite(trace).all() and np.shape(trace) == (2, 2)
    assert any(not torch.equal(p, q) for p, q in zip(before, m.parameters()))


def test_attribute_targets_and_features():
    sc = scenes(30, seed=13)
    vocab = Vocab([c for s in sc for c in s.captions])
    b = scene_batch(sc, vocab, 24)
    for k, s in enumerate(sc):
        for i, o in enumerate(s.objects):
            assert [vals[int(b.attributes[k, i, a])] for a, (_, vals) in enumerate(ATTRIBUTES)] == [
                o.shape, o.colour, o.size, o.texture]
        assert (b.attributes[k, len(s.objects):] == -100).all()
    enc = fit_attribute_encoder([b], epochs=1)
    fb = with_features(b, enc)
    assert fb.features.shape == (*b.mask.shape, enc.n_features) and not fb.features.requires_grad
    m = Captioner(len(vocab), "spatial", in_features=enc.n_features)
    assert greedy_decode(m, fb, 5)[0].shape[0] == len(sc)
    with pytest.raises(ValueError, match="batch.features"): m.regions(b)


def test_grounding_of_references_and_of_absent_objects():
    for s in scenes(40, seed=17):
        assert all(grounding(c, s) == (1.0, 1.0) for c in s.captions)
    assert grounding("a pink hexagon above a pink hexagon", s) == (0.0, 0.0)
    assert grounding("", s) == (0.0, 0.0)


def test_bad_inputs_are_named(tiny):
    vocab, sc, m = tiny
    b = scene_batch(sc, vocab, 5)
    with pytest.raises(ValueError, match="share one shape"): scst_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="n_samples"): sample_decode(m, b, n_samples=0)
    with pytest.raises(ValueError, match="ids must have shape"): sequence_logprob(m, b, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="epochs"): scst_train(m, [b], vocab, epochs=-1)
    with pytest.raises(ValueError, match="attributes"): fit_attribute_encoder([])
