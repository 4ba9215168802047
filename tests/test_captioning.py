"Checks of alignnb.captioning.graphs: the spatial labeller by properties, CIDEr-D and BLEU-4 against pycocoevalcap."
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from alignnb.captioning.graphs import SPATIAL_CLASSES, bleu4, cider_d, octant, spatial_graph, spatial_label
from alignnb.data import scene

REVERSE = {0: 0, 1: 2, 2: 1, 3: 3, **{4 + k: 4 + (k + 4) % 8 for k in range(8)}}
box = st.tuples(st.integers(0, 80), st.integers(0, 80), st.integers(1, 40), st.integers(1, 40)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@settings(max_examples=300, deadline=None)
@given(box, box)
def test_reverse_edges_are_consistent(a, b):
    lab, rev = spatial_label(a, b, 96, 96), spatial_label(b, a, 96, 96)
    assert 0 <= lab < len(SPATIAL_CLASSES)
    assert rev == REVERSE[lab]


@settings(max_examples=300, deadline=None)
@given(box, box)
def test_angle_classes_agree_with_atan2_off_the_boundaries(a, b):
    lab = spatial_label(a, b, 96, 96)
    dx, dy = (a[0] + a[2] - b[0] - b[2]) / 2, (b[1] + b[3] - a[1] - a[3]) / 2
    if lab >= 4:
        deg = math.degrees(math.atan2(dy, dx)) % 360
        if min(deg % 45, 45 - deg % 45) > 1e-6: assert lab - 4 == int(deg // 45)
    if lab == 0: assert math.hypot(dx, dy) >= 0.5 * math.hypot(96, 96)


@pytest.mark.parametrize("k", range(8))
def test_boundary_angles_each_map_to_one_class(k):
    # a 10-pixel box whose centre sits exactly at 45k degrees from the anchor's, 20 pixels away along each axis
    ux, uy = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)][k]
    anchor = (40, 40, 50, 50)
    other = (40 + 20 * ux, 40 - 20 * uy, 50 + 20 * ux, 50 - 20 * uy)
    assert spatial_label(other, anchor, 96, 96) == 4 + k
    assert spatial_label(anchor, other, 96, 96) == 4 + (k + 4) % 8
    assert octant(ux, uy) == k


def test_angle_zero_is_not_overlap_and_containment_classes():
    assert spatial_label((60, 10, 70, 20), (10, 10, 20, 20), 96, 96) == 4  # the copied code's bug gives 3
    assert spatial_label((12, 12, 18, 18), (10, 10, 40, 40), 96, 96) == 1
    assert spatial_label((10, 10, 40, 40), (12, 12, 18, 18), 96, 96) == 2
    assert spatial_label((10, 10, 40, 40), (12, 10, 42, 40), 96, 96) == 3
    assert spatial_label((0, 0, 5, 5), (90, 90, 95, 95), 96, 96) == 0


def test_graph_has_one_label_per_ordered_pair_and_zero_diagonal():
    s = scene(7)
    g = spatial_graph([o.box for o in s.objects], 96, 96)
    n = len(s.objects)
    assert g.shape == (n, n) and (np.diag(g) == 0).all()
    assert all(g[j, i] == REVERSE[g[i, j]] for i in range(n) for j in range(n))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="box_j"): spatial_label((0, 0, 5, 5), (3, 3, 2, 9), 96, 96)
    with pytest.raises(ValueError, match="width"): spatial_graph([(0, 0, 5, 5)], 0, 96)
    with pytest.raises(ValueError, match="same length"): cider_d(["a b"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="train_references"): cider_d(["a b"], [["a"]], df="train")
    with pytest.raises(ValueError, match="df must be"): cider_d(["a b"], [["a"]], df="idf")
    with pytest.raises(TypeError, match="candidates"): bleu4("a b", [["a"]])


def _corpus(seed, n=30):
    sc = [scene(seed + i) for i in range(n)]
    return [s.captions[0] for s in sc], [s.captions[1:] for s in sc]


@pytest.mark.parametrize("seed", [0, 500, 9000])
def test_cider_d_corpus_mode_equals_pycocoevalcap(seed):
    cands, refs = _corpus(seed)
    cands[0] = "a"  # a one-word candidate: no bigrams, and a lower-order-only match
    peer, peer_each = Cider().compute_score(dict(enumerate(refs)), {i: [c] for i, c in enumerate(cands)})
    ours, ours_each = cider_d(cands, refs, df="corpus")
    assert abs(ours - peer) < 1e-9
    np.testing.assert_allclose(ours_each, peer_each, atol=1e-9, rtol=0)


def test_cider_d_train_mode_uses_the_training_frequencies():
    cands, refs = _corpus(0, 10)
    train = [s.captions for s in [scene(5000 + i) for i in range(50)]]
    via_train, _ = cider_d(cands, refs, df="train", train_references=train)
    # pycocoevalcap with the training references appended as extra images scores the same candidates with those
    # frequencies only if the evaluated images are the training ones: check on the training set itself instead
    tc = [t[0] for t in train]
    tr = [t[1:] + [t[0]] for t in train]
    a, _ = cider_d(tc, tr, df="train", train_references=tr)
    b, _ = Cider().compute_score(dict(enumerate(tr)), {i: [c] for i, c in enumerate(tc)})
    assert abs(a - b) < 1e-9
    assert via_train != cider_d(cands, refs)[0]


@pytest.mark.parametrize("seed", [0, 777])
def test_bleu4_equals_pycocoevalcap(seed):
    cands, refs = _corpus(seed)
    cands[3] = "a red circle"  # a short candidate: brevity penalty
    peer = Bleu(4).compute_score(dict(enumerate(refs)), {i: [c] for i, c in enumerate(cands)}, verbose=0)[0][3]
    assert abs(bleu4(cands, refs) - peer) < 1e-9
