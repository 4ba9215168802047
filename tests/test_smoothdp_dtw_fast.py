"""The fused squared-Euclidean soft-DTW path (costs computed inside the compiled sweeps) against the plain recursion.

The reference is `_dtw_forward` (torch ops on anti-diagonals, differentiated by autograd) on costs built by
broadcasting, an independent route to the same numbers; the fused path is what `soft_dtw` takes on the CPU."""
import importlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.smoothdp import soft_dtw

dtw_module = importlib.import_module("alignnb.smoothdp.dtw")
kernels = importlib.import_module("alignnb.smoothdp.kernels")


def plain(x, y, gamma=1.0, omega="entropy", lengths_x=None, lengths_y=None, band=None):
    "Values and gradients (dx, dy) of the plain recursion on broadcast costs, float64."
    x, y = x.detach().double().requires_grad_(), y.detach().double().requires_grad_()
    B, m, n = x.shape[0], x.shape[1], y.shape[1]
    lx = torch.full((B,), m) if lengths_x is None else lengths_x
    ly = torch.full((B,), n) if lengths_y is None else lengths_y
    theta = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)
    value = dtw_module._dtw_forward(theta, lx, ly, omega, gamma, band)[0]
    gx, gy = torch.autograd.grad(value.sum(), (x, y))
    return value.detach(), gx, gy


def fused(x, y, gamma=1.0, omega="entropy", lengths_x=None, lengths_y=None, bandwidth=None, band="diagonal"):
    x, y = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    value = kernels._soft_dtw_fused(x, y, omega, gamma, bandwidth, lengths_x, lengths_y, band)
    assert value is not None, "the fused path did not apply"
    gx, gy = torch.autograd.grad(value.sum(), (x, y))
    return value.detach(), gx, gy


def close(a, b, rtol):
    for u, v in zip(a, b):
        scale = max(float(v.abs().max()), 1e-30)
        assert float((u.double() - v).abs().max()) <= rtol * scale, (u, v)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("omega", ["entropy", "l2", "hard"])
def test_fused_matches_plain_unequal_lengths(dtype, rtol, omega):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 11, 3, generator=g, dtype=dtype), torch.randn(5, 8, 3, generator=g, dtype=dtype)
    lx, ly = torch.tensor([11, 1, 7, 4, 11]), torch.tensor([8, 1, 8, 2, 5])
    close(fused(x, y, 0.5, omega, lx, ly), plain(x, y, 0.5, omega, lx, ly), rtol)


def test_fused_band_matches_plain():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 12, 2, generator=g, dtype=torch.float64)
    y = torch.randn(3, 12, 2, generator=g, dtype=torch.float64)
    close(fused(x, y, 0.3, bandwidth=2), plain(x, y, 0.3, band=(2, 2)), 1e-10)


def test_length_one_is_the_single_cost():
    x, y = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.5, -1.0]]])
    value, gx, gy = fused(x, y)
    assert torch.allclose(value, torch.tensor([0.25 + 9.0]))
    assert torch.allclose(gx, 2 * (x - y)) and torch.allclose(gy, -2 * (x - y))


def test_small_gamma_approaches_hard_dtw():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(4, 10, 2, generator=g), torch.randn(4, 9, 2, generator=g)
    hard = plain(x, y, 1.0, "hard")[0]
    value = fused(x, y, 1e-4)[0]
    assert torch.all(value.double() <= hard + 1e-5) and torch.all(value.double() >= hard - 1e-4 * np.log(3) * 19 - 1e-4)
    close(fused(x.double(), y.double(), 1e-3), plain(x, y, 1e-3), 1e-8)


def test_huge_values_fall_back_and_scale_exactly():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 2, generator=g, dtype=torch.float64)
    y = torch.randn(2, 5, 2, generator=g, dtype=torch.float64)
    c = 1e5  # costs ~1e10 reach the border value: soft_dtw composes and rescales
    assert kernels._soft_dtw_fused(c * x, c * y, "entropy", 1.0, None, None, None, "diagonal") is None
    # soft-DTW is homogeneous: sdtw(c x, c y; c^2 gamma) = c^2 sdtw(x, y; gamma)
    expected = c * c * plain(x, y, 0.5)[0]
    torch.testing.assert_close(soft_dtw(c * x, c * y, gamma=c * c * 0.5), expected, rtol=1e-9, atol=0)


def test_soft_dtw_takes_the_fused_path_and_keeps_second_derivatives():
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 2, dtype=torch.float64)
    assert "SoftDTWSq" in type(soft_dtw(x, y).grad_fn).__name__
    assert torch.autograd.gradgradcheck(lambda a: soft_dtw(a, y, gamma=0.5), (x,))
    assert torch.autograd.gradcheck(lambda a, b: soft_dtw(a, b, gamma=0.5, normalize=True),
                                    (x, y.clone().requires_grad_()))


def test_barycenter_expanded_input():
    x = torch.randn(1, 6, 2).expand(3, -1, -1).requires_grad_()
    y = torch.randn(3, 6, 2)
    value, gx, gy = fused(x, y)
    close((value, gx, gy), plain(x, y), 2e-4)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3), st.floats(0.01, 5.0), st.integers(0, 2**31 - 1))
def test_fused_matches_plain_property(m, n, d, gamma, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, m, d, generator=g, dtype=torch.float64)
    y = torch.randn(2, n, d, generator=g, dtype=torch.float64)
    close(fused(x, y, gamma), plain(x, y, gamma), 1e-9)
