"""The exp-space CRF sweep (viterbi on chain_potentials' θ) against the log-space recursion on the plain broadcast θ.

Every check runs the same maths twice: through `viterbi(chain_potentials(...))`, which takes the compiled exp-space
sweep, and through `viterbi(_chain_potentials_plain(...))`, a θ without the record of its parameters, which takes the
general recursion. Values and gradients (emissions, transitions, start, end) must agree.
"""
import itertools

import pytest
import torch

from alignnb.smoothdp import ViterbiLoss, chain_potentials, path_score, viterbi, viterbi_marginals
from alignnb.smoothdp import kernels
from alignnb.smoothdp.viterbi import _chain_of, _chain_potentials_plain

TOL = {torch.float64: 1e-9, torch.float32: 2e-4}


def _params(B, T, S, dtype, seed, scale=2.0, with_start=True, with_end=True):
    g = torch.Generator().manual_seed(seed)
    e = scale * torch.randn(B, T, S, generator=g, dtype=dtype)
    A = torch.randn(S, S, generator=g, dtype=dtype)
    start = torch.randn(S, generator=g, dtype=dtype) if with_start else None
    end = torch.randn(S, generator=g, dtype=dtype) if with_end else None
    chain_len = torch.randint(1, T + 1, (B,), generator=g)
    vit_len = torch.randint(1, T + 1, (B,), generator=g)
    vit_len[0] = T
    return e, A, start, end, chain_len if with_end else None, vit_len


def _value_and_grads(build, params, gamma, lengths, tags=None, weights=None):
    e, A, start, end, chain_len = [p.detach().clone().requires_grad_()
                                   if isinstance(p, torch.Tensor) and p.is_floating_point() else p for p in params]
    theta = build(e, A, start, end, chain_len)
    if tags is None: value = viterbi(theta, "entropy", gamma, lengths)
    else: value = ViterbiLoss("entropy", gamma, reduction="none")(theta, tags, lengths)
    w = torch.ones_like(value) if weights is None else weights
    (value * w).sum().backward()
    return value.detach(), [p.grad for p in (e, A, start, end) if p is not None]


def _assert_close(a, b, dtype):
    tol = TOL[dtype]
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("S,gamma", [(1, 1.0), (3, 0.1), (5, 1.0), (17, 7.0), (30, 0.5)])
@pytest.mark.parametrize("with_start,with_end", [(True, True), (False, False), (True, False), (False, True)])
def test_sweep_matches_the_log_space_recursion(dtype, S, gamma, with_start, with_end):
    params = _params(6, 9, S, dtype, S * 7 + with_start + 2 * with_end, with_start=with_start, with_end=with_end)
    lengths = params[-1]
    theta = chain_potentials(*params[:5])
    assert kernels._viterbi_mode(theta, "entropy", gamma, _chain_of(theta)) == "chain"
    weights = torch.rand(6, generator=torch.Generator().manual_seed(1), dtype=dtype)
    fast = _value_and_grads(chain_potentials, params[:5], gamma, lengths, weights=weights)
    plain = _value_and_grads(_chain_potentials_plain, params[:5], gamma, lengths, weights=weights)
    _assert_close(fast[0], plain[0], dtype)
    for a, b in zip(fast[1], plain[1]): _assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_loss_matches_viterbi_minus_path_score(dtype):
    params = _params(7, 11, 6, dtype, 3)
    lengths = params[-1]
    tags = torch.randint(0, 6, (7, 11), generator=torch.Generator().manual_seed(2))
    tags[lengths < 11, -1] = -100  # ignored beyond each length
    fast = _value_and_grads(chain_potentials, params[:5], 1.0, lengths, tags=tags)

    def composed(e, A, start, end, chain_len):
        return _chain_potentials_plain(e, A, start, end, chain_len)
    e, A, start, end, chain_len = [p.detach().clone().requires_grad_() if p is not None and p.is_floating_point() else p
                                   for p in params[:5]]
    theta = composed(e, A, start, end, chain_len)
    value = viterbi(theta, "entropy", 1.0, lengths) - path_score(theta, tags, lengths)
    value.sum().backward()
    _assert_close(fast[0], value.detach(), dtype)
    for a, b in zip(fast[1], [e.grad, A.grad, start.grad, end.grad]): _assert_close(a, b, dtype)
    assert (fast[0] > 0).all()  # a negative log-likelihood of more than one possible sequence


def test_gradcheck_and_second_order_through_the_sweep():
    e, A, start, end, chain_len, lengths = _params(3, 5, 3, torch.float64, 11)
    inputs = [p.clone().requires_grad_() for p in (e, A, start, end)]

    def f(e, A, start, end):
        return viterbi(chain_potentials(e, A, start, end, chain_len), "entropy", 0.7, lengths)
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)  # create_graph: the differentiable recursion
    tags = torch.randint(0, 3, (3, 5), generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda *p: ViterbiLoss("entropy", 0.7, "none")(
        chain_potentials(*p, chain_len), tags, lengths), inputs)


def test_changed_theta_or_parameters_leave_the_sweep():
    e, A, start, end, chain_len, lengths = _params(4, 6, 4, torch.float64, 5)
    theta = chain_potentials(e, A, start, end, chain_len)
    assert _chain_of(theta) is not None
    for stale in (theta.detach(), theta[:, :4], theta.clone(), theta + 0):
        assert _chain_of(stale) is None
    with torch.no_grad(): e.mul_(2.0)  # θ was built from the old emissions: the sweep uses its copies of them
    assert _chain_of(theta) is not None
    torch.testing.assert_close(viterbi(theta, "entropy", 1.0, lengths),
                               viterbi(theta.detach().clone(), "entropy", 1.0, lengths))
    theta2 = chain_potentials(e, A, start, end, chain_len)
    with torch.no_grad(): theta2[1, 2] += 3.0
    assert _chain_of(theta2) is None
    torch.testing.assert_close(viterbi(theta2, "entropy", 1.0, lengths),
                               viterbi(theta2.detach().clone(), "entropy", 1.0, lengths))
    with torch.inference_mode():
        theta3 = chain_potentials(e, A, start, end, chain_len)
        plain = _chain_potentials_plain(e, A, start, end, chain_len)
        torch.testing.assert_close(viterbi(theta3, "entropy", 1.0, lengths), viterbi(plain, "entropy", 1.0, lengths))


@pytest.mark.parametrize("gamma,forbidden", [(1.0, -1e4), (0.01, -5.0), (2e7, 0.0)])
def test_outside_the_bound_the_log_space_recursion_runs(gamma, forbidden):
    e, A, start, end, chain_len, lengths = _params(3, 7, 4, torch.float64, 9)
    A = A.clone(); A[0, 1] = A[2, 3] = forbidden  # a constrained CRF: transitions far below the rest
    theta = chain_potentials(e, A, start, end, chain_len)
    assert kernels._viterbi_mode(theta, "entropy", gamma, _chain_of(theta)) != "chain"
    torch.testing.assert_close(viterbi(theta, "entropy", gamma, lengths),
                               viterbi(_chain_potentials_plain(e, A, start, end, chain_len), "entropy", gamma, lengths))


def test_wide_emissions_lose_nothing():
    # states far behind (up to 3000 / gamma nats: e^-x underflows float64) at one step and far ahead at the next
    e, A, start, end, chain_len, lengths = _params(5, 12, 6, torch.float64, 13, scale=600.0)
    fast = _value_and_grads(chain_potentials, (e, A, start, end, chain_len), 0.2, lengths)
    plain = _value_and_grads(_chain_potentials_plain, (e, A, start, end, chain_len), 0.2, lengths)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-12, atol=1e-9)
    for a, b in zip(fast[1], plain[1]): torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_marginals_retained_gradients_and_other_uses_of_theta():
    e, A, start, end, chain_len, lengths = _params(4, 8, 5, torch.float64, 17)
    reference = viterbi_marginals(_chain_potentials_plain(e, A, start, end, chain_len), "entropy", 1.0, lengths)
    ep = e.clone().requires_grad_()
    theta = chain_potentials(ep, A, start, end, chain_len)
    torch.testing.assert_close(viterbi_marginals(theta, "entropy", 1.0, lengths), reference)
    theta = chain_potentials(ep, A, start, end, chain_len)
    theta.retain_grad()
    (viterbi(theta, "entropy", 1.0, lengths).sum() + (theta * 0.5).sum()).backward()  # θ used twice: grads add
    torch.testing.assert_close(theta.grad, reference + 0.5)
    torch.testing.assert_close(ep.grad, (reference + 0.5).sum(-1))


def test_near_overflow_theta_is_still_checked():
    e, A, start, end, chain_len, lengths = _params(2, 4, 3, torch.float32, 21)
    big = torch.full_like(e, 3e38)
    with pytest.raises(ValueError, match="theta"):
        viterbi(chain_potentials(big, A, start, end, chain_len), "entropy", 1.0, lengths)  # θ = 3e38 + A: inf


def test_long_sequences_in_float32_match_float64():
    e, A, start, end, chain_len, lengths = _params(3, 400, 12, torch.float64, 23)
    v64, g64 = _value_and_grads(chain_potentials, (e, A, start, end, chain_len), 1.0, lengths)
    v32, g32 = _value_and_grads(chain_potentials, [p.float() if p is not None and p.is_floating_point() else p
                                                   for p in (e, A, start, end, chain_len)], 1.0, lengths)
    torch.testing.assert_close(v32.double(), v64, rtol=1e-6, atol=1e-3)
    for a, b in zip(g32, g64): torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("B,T,S", [(0, 3, 4), (1, 1, 1), (2, 1, 3), (3, 4, 1)])
def test_degenerate_shapes(B, T, S):
    e, A, start, end, _, _ = _params(max(B, 1), T, S, torch.float64, B + T + S)
    e, lengths = e[:B], torch.full((B,), T)
    fast = _value_and_grads(chain_potentials, (e, A, start, end, lengths), 1.0, lengths)
    plain = _value_and_grads(_chain_potentials_plain, (e, A, start, end, lengths), 1.0, lengths)
    for a, b in zip([fast[0], *fast[1]], [plain[0], *plain[1]]): torch.testing.assert_close(a, b)
    tags = torch.zeros(B, T, dtype=torch.long)  # an empty batch's loss is 0 (its tags once failed the range check)
    loss = ViterbiLoss("entropy", 1.0, "sum")(chain_potentials(e, A, start, end, lengths), tags, lengths)
    assert loss.item() >= -1e-9 and (B > 0 or loss.item() == 0)  # S = 1: one sequence, loss 0 up to rounding


def test_parameters_changed_behind_the_version_counter():
    # found by review: emissions sharing memory with NumPy, and parameters changed through .data, bump no version
    e, A, start, end, chain_len, lengths = _params(2, 5, 3, torch.float64, 29)
    array = e.numpy().copy()
    shared = torch.from_numpy(array)
    theta = chain_potentials(shared, A, start, end, chain_len)
    A_live = A.clone().requires_grad_()
    theta_live = chain_potentials(e, A_live, start, end, chain_len)
    array += 1.0
    A_live.data.add_(1.0)
    for th in (theta, theta_live):  # the sweep must give θ's own value, not the changed parameters'
        own = viterbi(th.detach().clone(), "entropy", 1.0, lengths)
        torch.testing.assert_close(viterbi(th, "entropy", 1.0, lengths), own)


@pytest.mark.parametrize("forbidden", [95.0, 99.0, 99.9])
def test_float32_gradient_near_the_bound(forbidden):
    # found by review: factors near e^-100 are subnormal in float32; the product is now formed in float64
    A = torch.tensor([[-forbidden, -forbidden], [0.0, 0.0]])
    e = torch.tensor([[[0.0, 0.0], [150.0, 0.0], [0.0, 0.0]]])
    theta = chain_potentials(e, A)
    assert kernels._viterbi_mode(theta, "entropy", 1.0, _chain_of(theta)) == "chain"
    fast = viterbi_marginals(theta, "entropy", 1.0)
    reference = viterbi_marginals(_chain_potentials_plain(e.double(), A.double()), "entropy", 1.0)
    torch.testing.assert_close(fast.double(), reference, rtol=1e-5, atol=1e-6)


def test_the_buffer_pool_never_hands_out_memory_in_use():
    import numpy as np
    a = kernels._pooled_empty((2**22 + 1,), np.float32)  # above 16 MiB: pooled
    a[:] = 1.0
    view = torch.from_numpy(a)[10:20]
    del a
    b = kernels._pooled_empty((2**22 + 1,), np.float32)  # the first is still referenced through `view`
    b[:] = 2.0
    assert not np.shares_memory(b, view.numpy()) and float(view.sum()) == 10.0
    base = b.base if b.base is not None else b
    del b, base, view
    c = kernels._pooled_empty((2**22 + 1,), np.float32)  # now one of the two is free again: reused, not a third
    assert sum(x.nbytes == c.nbytes for x in kernels._POOL) == 2
    small = kernels._pooled_empty((1000,), np.float64)
    assert not any(np.shares_memory(small, x) for x in kernels._POOL)  # small arrays are plain np.empty
