"""DTW borders never undercut a real path, at any cost scale: checked against a float64 recursion with infinite borders."""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from alignnb.smoothdp import dtw, soft_dtw


def reference_dtw(C: np.ndarray, gamma: float | None) -> float:
    "R_ij = C_ij + softmin(R_{i-1,j}, R_{i,j-1}, R_{i-1,j-1}) with +inf borders; gamma None: the hard min."
    m, n = C.shape
    R = np.full((m + 1, n + 1), np.inf)
    R[0, 0] = 0.0
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            prev = np.array([R[i - 1, j], R[i, j - 1], R[i - 1, j - 1]])
            soft = prev.min() if gamma is None else -gamma * logsumexp(-prev / gamma)
            R[i, j] = C[i - 1, j - 1] + soft
    return R[m, n]


def test_the_issues_cost_matrix_gives_the_true_value():
    C = np.full((20, 20), 1e12)
    C[0, :], C[:, -1] = 1e9, 1e9
    assert reference_dtw(C, None) == pytest.approx(3.8e10, rel=1e-12)
    assert dtw(torch.tensor(C)[None], "hard").item() == pytest.approx(3.8e10, rel=1e-12)
    assert dtw(torch.tensor(C)[None], "entropy", 1.0).item() == pytest.approx(reference_dtw(C, 1.0), rel=1e-9)


def test_the_issues_series_give_the_true_soft_dtw():
    x = torch.tensor([0.0] + [1e5] * 29, dtype=torch.float64)[None, :, None]
    y = torch.tensor([3e4] * 29 + [1e5], dtype=torch.float64)[None, :, None]
    C = ((x[0] - y[0].T) ** 2).numpy()
    expected = reference_dtw(C, 1.0)
    assert expected == pytest.approx(2.61e10, rel=1e-2)
    assert soft_dtw(x, y, gamma=1.0).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("scale", [1.0, 1e6, 1e9, 1e12])
@pytest.mark.parametrize("omega, gamma", [("hard", None), ("entropy", 0.5)])
def test_values_and_alignments_scale_with_the_costs(scale, omega, gamma):
    rng = np.random.default_rng(0)
    C = rng.uniform(0, 1, size=(7, 9)) * scale
    got = dtw(torch.tensor(C)[None], omega, 1.0 if gamma is None else gamma * scale).item()
    want = reference_dtw(C, None if gamma is None else gamma * scale)
    assert got == pytest.approx(want, rel=1e-9)
    theta = torch.tensor(C)[None].requires_grad_()
    dtw(theta, omega, 1.0 if gamma is None else gamma * scale).sum().backward()
    base = torch.tensor(C / scale)[None].requires_grad_()
    dtw(base, omega, 1.0 if gamma is None else gamma).sum().backward()
    torch.testing.assert_close(theta.grad, base.grad, rtol=1e-6, atol=1e-9)  # the alignment does not depend on scale
