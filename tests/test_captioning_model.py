"Checks of alignnb.captioning.model and experiments: the GCN against a loop over edges, decoding, fusion, parsing."
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.captioning.model import (PREDICATES, Captioner, EdgeGatedGCN, Vocab, beam_search, greedy_decode,
                                      scene_batch)
from alignnb.captioning.experiments import parse_clause, relation_accuracy
from alignnb.data import scenes


def _loop_reference(layer, v, labels, mask):
    "The GCN-LSTM formula read literally, one node and one edge at a time (numpy)."
    P = {k: p.detach().numpy() for k, p in layer.named_parameters()}
    sig = lambda x: 1 / (1 + np.exp(-x))
    out = np.zeros_like(v)
    for i in range(len(v)):
        if not mask[i]: continue
        h = sig(P["gate.loop"] @ v[i]) * (P["W.loop.weight"] @ v[i])
        for j in range(len(v)):
            if not mask[j] or i == j and labels[i, j] == 0: continue
            if labels[i, j]:
                r = labels[i, j]
                h = h + sig(P["gate.out"] @ v[j] + P["gate_bias"][r]) * (P["W.out.weight"] @ v[j] + P["bias"][r])
            if labels[j, i]:
                r = labels[j, i]
                h = h + sig(P["gate.in"] @ v[j] + P["gate_bias"][r]) * (P["W.in.weight"] @ v[j] + P["bias"][r])
        out[i] = np.maximum(h, 0) + (v[i] if layer.residual else 0)
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6), st.booleans())
def test_gcn_equals_the_loop_over_edges(seed, n, residual):
    g = torch.Generator().manual_seed(seed)
    layer = EdgeGatedGCN(8, 5, residual)
    with torch.no_grad():
        for p in layer.parameters(): p.copy_(torch.randn(p.shape, generator=g))
    v = torch.randn(1, n, 8, generator=g)
    labels = torch.randint(0, 5, (1, n, n), generator=g) * (1 - torch.eye(n, dtype=torch.long))
    mask = torch.ones(1, n, dtype=torch.bool)
    mask[0, -1] = bool(seed % 2)  # sometimes a padded region
    with torch.no_grad(): fast = layer(v, labels, mask)[0].numpy()
    ref = _loop_reference(layer, v[0].numpy(), labels[0].numpy(), mask[0].numpy())
    np.testing.assert_allclose(fast, ref, atol=1e-4, rtol=1e-4)


def test_gcn_is_permutation_equivariant():
    torch.manual_seed(0)
    layer = EdgeGatedGCN(8, 4)
    v, labels = torch.randn(1, 5, 8), torch.randint(0, 4, (1, 5, 5))
    mask = torch.ones(1, 5, dtype=torch.bool)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        a = layer(v, labels, mask)[0, perm]
        b = layer(v[:, perm], labels[:, perm][:, :, perm], mask)[0]
    torch.testing.assert_close(a, b)


@pytest.fixture(scope="module")
def small():
    sc = scenes(6, seed=2)
    vocab = Vocab([c for s in sc for c in s.captions])
    torch.manual_seed(0)
    return vocab, scene_batch(sc, vocab, 24), Captioner(len(vocab), "spatial"), Captioner(len(vocab), "semantic")


def test_beam_one_is_greedy_and_fusing_a_model_with_itself_changes_nothing(small):
    vocab, batch, m, _ = small
    g = greedy_decode(m, batch, 10)[0]
    assert [vocab.decode(x) for x in g] == [vocab.decode(x) for x in beam_search(m, batch, 1, 10)]
    assert [vocab.decode(x) for x in greedy_decode([m, m], batch, 10)[0]] == [vocab.decode(x) for x in g]


def test_fused_step_is_the_mean_of_the_two_distributions(small):
    vocab, batch, a, b = small
    from alignnb.captioning.model import _step_all
    fa, fb = a.regions(batch), b.regions(batch)
    w = torch.ones(len(batch.mask), dtype=torch.long)
    sa, sb = a.decoder.init_state(fa), b.decoder.init_state(fb)
    with torch.no_grad():
        fused, _ = _step_all([a, b], w, [fa, fb], batch.mask, [sa, sb])
        pa = a.decoder.step(w, fa, batch.mask, sa)[0].exp()
        pb = b.decoder.step(w, fb, batch.mask, sb)[0].exp()
    torch.testing.assert_close(fused.exp(), (pa + pb) / 2)


def test_batch_relations_match_the_scene_graph(small):
    vocab, batch, _, _ = small
    for b, s in enumerate(batch.scenes):
        got = {(int(i), PREDICATES[int(batch.relations[b, i, j]) - 1], int(j)) for i, j in
               zip(*torch.nonzero(batch.relations[b], as_tuple=True))}
        assert got == set(s.relations)


def test_relation_accuracy_reads_the_references_and_catches_a_swap():
    for s in scenes(50, seed=8):
        assert all(relation_accuracy(c, s) == 1.0 for c in s.captions)
    from alignnb.data import RELATION_TEMPLATES as _TEMPLATES
    for s in scenes(20, seed=9):
        for i, p, j in s.relations:
            a, b = (f"a {s.objects[k].colour} {s.objects[k].shape}" for k in (i, j))
            assert relation_accuracy(_TEMPLATES[p][0].format(s=a, o=b), s) == 1.0
            assert relation_accuracy(_TEMPLATES[p][1].format(s=a, o=b), s) == 1.0
            assert relation_accuracy(_TEMPLATES[p][0].format(s=b, o=a), s) == 0.0  # swapped: one relation per pair
    assert parse_clause("a red circle") is None and relation_accuracy("", s) == 0.0


def test_bad_inputs_are_named(small):
    vocab, batch, m, _ = small
    with pytest.raises(ValueError, match="graph must be"): Captioner(10, "dense")
    with pytest.raises(ValueError, match="labels must lie"): m.gcn(torch.zeros(1, 2, 64), torch.full((1, 2, 2), 99),
                                                                   torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="beam"): beam_search(m, batch, 0)
    with pytest.raises(ValueError, match="scenes"): scene_batch([], vocab)
