"""alignnb.explain.evaluation against the ERASER / ferret formulas written out in plain Python over lists."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.explain.attribution import load_classifier, rationale_task
from alignnb.explain.evaluation import (
    ERASER_BINS, FERRET_BINS, comprehensiveness_sufficiency, curve_area, deletion_insertion_curves,
    kendall_tau_with_loo, rationale_agreement, top_k_mask)
from alignnb.explain.attribution import players

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    model = load_classifier()
    task = rationale_task(12, seed=21)
    scores = torch.randn(task.input_ids.shape, generator=torch.Generator().manual_seed(4))
    return model, task, scores


def _prob(model, tokens, y):
    with torch.no_grad(): return model(torch.tensor([tokens])).softmax(-1)[0, y].item()


def _ranked_players(ids, scores):
    "Players (not [CLS], not padding) as (position, score), highest score first, ties by position."
    items = [(t, float(scores[t])) for t in range(1, len(ids)) if ids[t] != 0]
    return sorted(items, key=lambda p: (-p[1], p[0]))


@pytest.mark.parametrize("bins", [ERASER_BINS, FERRET_BINS])
def test_comprehensiveness_and_sufficiency_match_the_written_out_formulas(setup, bins):
    model, task, scores = setup
    comp, suff = comprehensiveness_sufficiency(model, task.input_ids, task.labels, task.attention_mask, scores, bins)
    for i in range(len(task)):
        ids, y = task.input_ids[i].tolist(), int(task.labels[i])
        real = [t for t in ids if t != 0]
        ranked = _ranked_players(ids, scores[i])
        full = _prob(model, real, y)
        for j, q in enumerate(bins):
            k = math.ceil(round(q * len(ranked), 9))
            top = {p for p, _ in ranked[:k]}
            without = [ids[0]] + [ids[t] for t in range(1, len(real)) if t not in top]
            only = [ids[0]] + [ids[t] for t in range(1, len(real)) if t in top]
            assert abs(comp[i, j].item() - (full - _prob(model, without, y))) < 1e-6
            assert abs(suff[i, j].item() - (full - _prob(model, only, y))) < 1e-6


def test_deletion_curve_and_its_area(setup):
    model, task, scores = setup
    dele, ins, sizes = deletion_insertion_curves(model, task.input_ids[:3], task.labels[:3],
                                                 task.attention_mask[:3], scores[:3])
    for i in range(3):
        ids, y = task.input_ids[i].tolist(), int(task.labels[i])
        ranked = [p for p, _ in _ranked_players(ids, scores[i])]
        real = [t for t in ids if t != 0]
        curve = [_prob(model, [ids[0]] + [ids[t] for t in range(1, len(real)) if t not in ranked[:k]], y)
                 for k in range(len(ranked) + 1)]
        np.testing.assert_allclose(dele[i, :len(curve)].numpy(), curve, atol=1e-6)
        m = len(ranked)
        area = sum((curve[k] + curve[k + 1]) / 2 / m for k in range(m))
        assert abs(curve_area(dele[i:i + 1], sizes[i:i + 1]).item() - area) < 1e-6
        assert abs(ins[i, m].item() - curve[0]) < 1e-6  # keeping every player is the full sentence


def test_kendall_tau_and_auprc_by_brute_force(setup):
    model, task, scores = setup
    other = torch.randn(scores.shape, generator=torch.Generator().manual_seed(9))
    who = players(task.input_ids, task.attention_mask)
    taus = kendall_tau_with_loo(scores, other, who)
    auprc, f1 = rationale_agreement(scores, task.rationale, who)
    for i in range(len(task)):
        a, b = scores[i][who[i]].tolist(), other[i][who[i]].tolist()
        n = len(a)
        if n < 2: continue
        s = sum(np.sign(a[p] - a[q]) * np.sign(b[p] - b[q]) for p in range(n) for q in range(p + 1, n))
        assert abs(taus[i] - s / (n * (n - 1) / 2)) < 1e-9
        r = task.rationale[i][who[i]].tolist()
        order = sorted(range(n), key=lambda t: -a[t])
        hits, precisions = 0, []
        for rank, t in enumerate(order, 1):
            if r[t]: hits += 1; precisions.append(hits / rank)
        assert abs(auprc[i] - sum(precisions) / sum(r)) < 1e-9
        k = int(sum(r))
        tp = sum(r[t] for t in order[:k])
        assert abs(f1[i] - tp / k) < 1e-9  # top-k against k rationale tokens: precision = recall = F1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=12), st.data())
def test_top_k_mask_keeps_exactly_k_highest(values, data):
    s = torch.tensor([[0.0] + values])
    who = torch.tensor([[False] + [True] * len(values)])
    k = data.draw(st.integers(0, len(values)))
    top = top_k_mask(s, who, torch.tensor([k]))[0]
    assert int(top.sum()) == k and not top[0]
    if 0 < k < len(values): assert s[0][top].min() >= s[0][who[0] & ~top].max()


def test_perfect_scores_beat_random_on_plausibility(setup):
    model, task, scores = setup
    who = players(task.input_ids, task.attention_mask)
    auprc, f1 = rationale_agreement(task.rationale.float(), task.rationale, who)
    assert np.allclose(auprc, 1) and np.allclose(f1, 1)
    assert rationale_agreement(scores, task.rationale, who)[0].mean() < 0.9
