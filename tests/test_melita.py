"""Cross-checks of alignnb.melita: the archive against pyribs' GridArchive and against brute force, plain MAP-Elites
against the same run on pyribs' archive, the text cut against its closed-form distribution, the BCs of recombined
pairs, the assessor's ranking of true pairs, and named errors on bad input (hypothesis)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st, HealthCheck

from alignnb.melita import (
    EliteArchive, SearchConfig, clip_loss, grid_index, image_bc, load_assessor, map_elites, melita, mutate_text,
    render_cover, retrieval_report, sample_pairs, split_candidates, split_point, text_bc, generate_description,
    pairing_partners, mutate_genome, coherence_to_fitness, coherence)

ribs = pytest.importorskip("ribs")
from ribs.archives import GridArchive  # noqa: E402


@pytest.fixture(scope="module")
def assessor():
    return load_assessor()


# ---------------------------------------------------------------- archive vs pyribs and brute force

def _ribs_elites(archive):
    d = archive.data()
    o = np.argsort(d["index"])
    return d["index"][o], d["solution"][o, 0].astype(int), d["objective"][o]


batches = st.lists(st.lists(st.tuples(st.sampled_from([0.1, 0.2, 0.5, 0.5, 0.9]),
                                      st.floats(-0.5, 1.5), st.floats(-0.5, 1.5)), min_size=1, max_size=8),
                   min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_archive_matches_pyribs_on_the_same_insertions(batch_list):
    ours = EliteArchive((3, 2), ((0, 1), (0, 1)))
    theirs = GridArchive(solution_dim=2, dims=[3, 2], ranges=[(0, 1), (0, 1)], dtype=np.float64)
    next_id = 0
    for batch in batch_list:
        f = np.array([b[0] for b in batch])
        m = np.array([[b[1], b[2]] for b in batch])
        ids = np.arange(next_id, next_id + len(batch))
        next_id += len(batch)
        s_ours = ours.add(ids, ids, f, m)
        s_theirs = theirs.add(np.c_[ids, ids].astype(float), f, m)["status"]
        np.testing.assert_array_equal(s_ours, s_theirs)
        cells, tids, _, fit = ours.elites()
        rc, rt, rf = _ribs_elites(theirs)
        np.testing.assert_array_equal(cells, rc)
        np.testing.assert_array_equal(tids, rt)
        np.testing.assert_array_equal(fit, rf)


@settings(max_examples=150, deadline=None)
@given(batches)
def test_archive_equals_brute_force_first_of_the_fittest(batch_list):
    """Per cell, the elite is the earliest insertion among those with the highest fitness."""
    ours = EliteArchive((3, 2), ((0, 1), (0, 1)))
    seen, next_id = [], 0
    for batch in batch_list:
        f = np.array([b[0] for b in batch])
        m = np.array([[b[1], b[2]] for b in batch])
        ids = np.arange(next_id, next_id + len(batch))
        next_id += len(batch)
        ours.add(ids, ids, f, m)
        for i, (fi, x, y) in zip(ids, batch):
            cx = min(max(int(math.floor(3 * x + 1e-6)) if x >= 0 else 0, 0), 2)
            cy = min(max(int(math.floor(2 * y + 1e-6)) if y >= 0 else 0, 0), 1)
            seen.append((cx * 2 + cy, i, fi))
    best = {}
    for cell, i, fi in seen:
        if cell not in best or fi > best[cell][1]: best[cell] = (i, fi)
    cells, tids, _, fit = ours.elites()
    assert sorted(best) == list(cells)
    assert [best[c][0] for c in cells] == list(tids)
    assert [best[c][1] for c in cells] == list(fit)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 2), st.floats(-10, 80)), min_size=1, max_size=20))
def test_grid_index_matches_pyribs_index_of(points):
    m = np.array(points)
    dims, ranges = (7, 5), ((0.0, 1.0), (5.0, 65.0))
    archive = GridArchive(solution_dim=1, dims=list(dims), ranges=list(ranges), dtype=np.float64)
    flat = np.ravel_multi_index(grid_index(m, dims, ranges).T, dims)
    np.testing.assert_array_equal(flat, archive.index_of(m))


@pytest.mark.parametrize("seed", [0, 3])
def test_map_elites_matches_the_run_on_pyribs_archive(assessor, seed):
    cfg = SearchConfig(generator_calls=300, batch=8, n_init=16, seed=seed)
    a = map_elites(cfg, assessor)
    b = map_elites(SearchConfig(generator_calls=300, batch=8, n_init=16, seed=seed, archive="ribs"), assessor)
    for x, y in zip(a.archive.elites(), b.archive.elites()): np.testing.assert_array_equal(x, y)
    for k in a.curves: np.testing.assert_array_equal(a.curve(k), b.curve(k))


def test_melita_on_pyribs_archive_is_the_same_run(assessor):
    cfg = dict(generator_calls=200, batch=8, n_init=16, seed=1, scope="nearest", k=4)
    a, b = melita(SearchConfig(**cfg), assessor), melita(SearchConfig(**cfg, archive="ribs"), assessor)
    for x, y in zip(a.archive.elites(), b.archive.elites()): np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- the searches' invariants

@pytest.mark.parametrize("scope", ["all", "slice", "nearest"])
def test_recombined_pairs_keep_their_parts_bcs(assessor, scope):
    run = melita(SearchConfig(generator_calls=240, batch=8, n_init=16, seed=2, scope=scope), assessor)
    cells, tids, iids, fit = run.archive.elites()
    for c, t, i, f in zip(cells, tids, iids, fit):
        bc = np.r_[text_bc(run.pool.texts[t]), image_bc(render_cover(run.pool.genomes[i]))]
        assert run.archive.index_of(bc[None])[0] == c
        u = assessor.embed_texts([run.pool.texts[t]])
        v = assessor.embed_images(run.pool.genomes[i][None])
        assert abs(coherence_to_fitness(coherence(u, v))[0] - f) < 1e-6
    # counters: MEliTA spends one generator call per offspring and at least one assessor call
    g, a = run.curve("generator_calls"), run.curve("assessor_calls")
    assert g[-1] == 240 and np.all(np.diff(a) >= np.diff(g))


def test_map_elites_budget_counts(assessor):
    run = map_elites(SearchConfig(generator_calls=200, batch=8, n_init=16), assessor)
    g, a = run.curve("generator_calls"), run.curve("assessor_calls")
    assert g[-1] == 200 and np.all(np.diff(g) == 2 * np.diff(a))
    q = run.curve("qd_score")
    assert np.all(np.diff(q) >= -1e-12)  # an elite is only ever replaced by a fitter one, fitness >= 0


def test_slice_scope_is_the_new_artefacts_slice(assessor):
    run = melita(SearchConfig(generator_calls=200, batch=8, n_init=16, seed=4), assessor)
    cells = run.archive.elites()[0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        parent = int(rng.integers(len(cells)))
        bc = np.array([rng.uniform(5, 65), rng.uniform(0, 1)])
        part = pairing_partners(run.archive, cells, parent, bc, True, "slice")
        coords = np.stack(np.unravel_index(cells, run.archive.dims), 1)
        own = [min(int((5 * (bc[0] - 5) + 1e-6) / 60), 4), min(int((5 * bc[1] + 1e-6) / 1), 4)]
        expect = set(np.flatnonzero((coords[:, 0] == own[0]) & (coords[:, 1] == own[1]))) | {parent}
        assert set(part) == expect


# ---------------------------------------------------------------- text mutation

def test_split_point_distribution_matches_the_median_of_three():
    text = generate_description(0, np.random.default_rng(5), n_sentences=2)
    positions = split_candidates(text)
    n = len(positions)
    draws = 20000
    counts = np.array([0] * n)
    lookup = {p: j for j, p in enumerate(positions)}
    for s in range(draws): counts[lookup[split_point(text, np.random.default_rng(s))]] += 1
    k = np.arange(1, n + 1)
    p = (k - 1) * (n - k) / math.comb(n, 3)
    from scipy.stats import chisquare
    keep = p > 0
    assert counts[~keep].sum() == 0  # the first and last positions can never be a median
    assert chisquare(counts[keep], draws * p[keep]).pvalue > 1e-3


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(0, 10_000))
def test_mutated_text_keeps_a_prefix_cut_at_a_break(theme, seed):
    parent = generate_description(theme, np.random.default_rng(seed))
    child = mutate_text(parent, np.random.default_rng(seed + 1))
    inner = split_candidates(parent)[1:-1]  # a median of three distinct positions is never the first or last
    assert any(child.startswith(parent[:p].rstrip() + " ") for p in inner)
    assert not child.startswith(parent) or len(inner) == 0


# ---------------------------------------------------------------- assessor

def test_assessor_ranks_true_pairs_above_shuffled(assessor):
    r = retrieval_report(assessor, n=400, seed=777)
    assert r.pair_auc > 0.8 and r.true_fitness - r.shuffled_fitness > 0.1 and r.theme_top1 > 0.6


def test_clip_loss_matches_an_independent_form():
    g = torch.Generator().manual_seed(1)
    u = F.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    v = F.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    s = 3.0
    # open_clip's form: logits_per_image = s * image @ text.T; mean of the two cross-entropies
    lpi = s * v @ u.T
    expect = (-torch.log_softmax(lpi, 1).diagonal().mean() - torch.log_softmax(lpi.T, 1).diagonal().mean()) / 2
    assert torch.allclose(clip_loss(u, v, s), expect, atol=1e-12)
    u.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: clip_loss(F.normalize(x, dim=1), v, s), (u,))


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("make, word", [
    (lambda: SearchConfig(scope="rows"), "scope"),
    (lambda: SearchConfig(archive="cvt"), "archive"),
    (lambda: SearchConfig(k=0), "k"),
    (lambda: SearchConfig(generator_calls=5), "generator_calls"),
    (lambda: render_cover(np.ones(7)), "genome"),
    (lambda: render_cover(np.full(8, np.nan)), "genome"),
    (lambda: mutate_genome(np.ones(8), np.random.default_rng(0), rate=2.0), "rate"),
    (lambda: text_bc(None), "text"),
    (lambda: sample_pairs(0, np.random.default_rng(0)), "n"),
    (lambda: generate_description(-1, np.random.default_rng(0)), "theme"),
    (lambda: clip_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1.0), "text_emb"),
])
def test_bad_input_is_named(make, word):
    with pytest.raises((ValueError, TypeError), match=word): make()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=2))
def test_archive_rejects_non_finite_input(values):
    archive = EliteArchive((2, 2), ((0, 1), (0, 1)))
    if all(map(math.isfinite, values)):
        archive.add([0], [0], [0.5], np.array([values]))
        assert len(archive.elites()[0]) == 1
    else:
        with pytest.raises(ValueError, match="measures"): archive.add([0], [0], [0.5], np.array([values]))
