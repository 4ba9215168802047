"""The one-pass top-label ECE kernel against the plain reference path (bin_sums on check_probs' output)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.calibration import binned_calibration_error
from alignnb.calibration.scores import _errors_from_sums, _fused_top_sums, bin_sums, check_probs


def _plain(p, y, n_bins=15):
    q, yy = check_probs(p, y)
    return bin_sums(q, yy, n_bins, "width", "top")


def _random(n, c, dtype, seed, temp=2.0):
    rng = np.random.default_rng(seed)
    z = temp * rng.standard_normal((n, c))
    p = np.exp(z - z.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(dtype)
    return p, rng.integers(0, c, n)


def _same(fused, plain):
    for a, b in zip(fused, plain):
        np.testing.assert_array_equal(a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c,n_bins", [(1, 2, 1), (7, 3, 15), (1000, 10, 15), (3001, 257, 7)])
def test_fused_matches_plain(dtype, n, c, n_bins):
    p, y = _random(n, c, dtype, n + c)
    fused = _fused_top_sums(p, y, n_bins)
    assert fused is not None  # the fast path ran
    _same(fused, _plain(p, y, n_bins))
    _same(_fused_top_sums(torch.from_numpy(p), torch.from_numpy(y), n_bins), _plain(p, y, n_bins))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 60), st.integers(2, 12), st.integers(1, 20), st.integers(0, 2**31), st.sampled_from([0.1, 1.0, 30.0]))
def test_fused_matches_plain_property(n, c, n_bins, seed, temp):
    p, y = _random(n, c, np.float32, seed, temp)  # temp 30: near one-hot rows, confidences at 1.0 (the last bin)
    fused = _fused_top_sums(p, y, n_bins)
    if fused is not None: _same(fused, _plain(p, y, n_bins))  # None: a row off the simplex, also refused by the plain path
    else: pytest.raises(ValueError, check_probs, p, y)


def test_ties_take_the_first_maximum():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.45, 0.45, 0.0], [0.5, 0.5, 0.0, 0.0]], np.float32)
    for y in ([0, 1, 1], [3, 2, 0]):
        _same(_fused_top_sums(p, np.array(y), 15), _plain(p, y))
    assert _fused_top_sums(p, np.array([3, 2, 0]), 15)[2].sum() == 1  # only the third row's first maximum is its label


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_of_many_blocks_take_the_first_maximum(dtype):
    # rows are read in blocks of 128: ties inside a block, across blocks, and the maximum in the last partial block
    c, rng = 1000, np.random.default_rng(7)
    p = rng.uniform(0.5, 1.0, (6, c))
    top = [(0, 5), (1, 130), (2, 127), (3, 128), (4, 999), (5, 960)]
    for r, j in top: p[r, j] = 3.0
    p[1, 700] = p[2, 128] = p[2, 500] = p[3, 255] = p[5, 961] = 3.0  # later copies of the same maximum
    p = (p / p.sum(1, keepdims=True)).astype(dtype)
    assert [int(a) for a in p.argmax(1)] == [j for _, j in top]
    y = np.array([j for _, j in top])
    fused = _fused_top_sums(p, y, 15)
    assert fused is not None and fused[2].sum() == 6  # every row's label is its first maximum
    _same(fused, _plain(p, y))
    _same(_fused_top_sums(p, (y + 1) % c, 15), _plain(p, (y + 1) % c))


def test_rows_at_the_tolerance_edge_are_left_to_the_plain_check():
    p, y = _random(40, 600, np.float64, 3)
    for off, plain_ok in [(1e-3 - 2e-6, True), (1e-3 + 2e-6, False), (-(1e-3 - 2e-6), True), (5e-4, True)]:
        q = p.copy(); q[11] *= 1 + off  # row 11 sums to 1 + off, within 1e-5 of atol = 1e-3 in the first three
        near = abs(abs(off) - 1e-3) < 1e-5
        assert (_fused_top_sums(q, y, 15) is None) == (near or not plain_ok)
        if plain_ok:
            plain = float(_errors_from_sums(*_plain(q, y), "l1", False).mean())
            assert binned_calibration_error(q, y) == pytest.approx(plain, rel=1e-12)
        else: pytest.raises(ValueError, binned_calibration_error, q, y)


def test_bin_edges_and_one_hot():
    # confidences exactly on edges b / B (0.2 * 5 = 1.0, 0.6 * 5 = 3.0) and at 1.0, which belongs to the last bin
    p = np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [0.6, 0.4, 0, 0, 0], [0, 0, 1.0, 0, 0], [0.0, 1.0, 0, 0, 0]])
    y = np.array([0, 0, 2, 3])
    _same(_fused_top_sums(p, y, 5), _plain(p, y, 5))
    np.testing.assert_array_equal(_fused_top_sums(p, y, 5)[0], [[0, 1, 0, 1, 2]])


@pytest.mark.parametrize("bad,message", [(np.nan, "NaN"), (np.inf, "NaN or inf"), (-0.1, "negative"), (0.9, "sum to 1")])
def test_bad_rows_fall_back_and_raise_as_before(bad, message):
    p, y = _random(50, 4, np.float32, 0)
    p[17, 2] = bad
    assert _fused_top_sums(p, y, 15) is None
    with pytest.raises(ValueError, match=message): binned_calibration_error(p, y)


def test_negative_zero_and_huge_rows_agree_with_plain():
    p, y = _random(20, 3, np.float64, 1)
    p[3] = [-0.0, 1.0, 0.0]  # -0.0 passes the plain check; the kernel hands it to the plain path
    assert _fused_top_sums(p, y, 15) is None
    assert binned_calibration_error(p, y) == pytest.approx(binned_calibration_error(p + 0.0, y), abs=0)
    q = p.copy(); q[5] = [1e30, 0.0, 0.0]  # far off the simplex: refused like the plain path
    with pytest.raises(ValueError, match="sum to 1"): binned_calibration_error(q, y)


def test_inputs_the_kernel_does_not_take_give_the_plain_answer():
    p, y = _random(300, 6, np.float32, 2)
    ref = binned_calibration_error(p.astype(np.float64), y)
    assert _fused_top_sums(np.asfortranarray(p), y, 15) is None  # not C-contiguous
    assert binned_calibration_error(np.asfortranarray(p), y) == pytest.approx(ref, rel=1e-6)
    assert binned_calibration_error(p.tolist(), y) == pytest.approx(ref, rel=1e-6)  # a list
    assert binned_calibration_error(torch.from_numpy(p).requires_grad_(), torch.from_numpy(y)) == pytest.approx(ref, rel=1e-6)
    q, yy = check_probs(p, y)
    per = {norm: _errors_from_sums(*bin_sums(q, yy, 15), norm, False) for norm in ("l1", "l2", "max", "kl")}
    for norm, plain in (("l1", per["l1"].mean()), ("kl", per["kl"].mean()), ("max", per["max"].max()),
                        ("l2", np.sqrt(np.mean(per["l2"] ** 2)))):
        assert binned_calibration_error(p, y, 15, norm=norm) == pytest.approx(float(plain), rel=1e-9)


@pytest.mark.parametrize("labels,n_bins,err,message", [([0] * 299, 15, ValueError, "length"), ([9] * 300, 15, ValueError, "lie in"),
                                                       (None, 15, TypeError, "labels"), ([0] * 300, 0, ValueError, "n_bins"),
                                                       ([0] * 300, True, ValueError, "n_bins")])
def test_bad_arguments_raise_as_before(labels, n_bins, err, message):
    p, _ = _random(300, 6, np.float32, 3)
    with pytest.raises(err, match=message): binned_calibration_error(p, labels, n_bins)
