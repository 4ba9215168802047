"""The compiled entropy Viterbi (alignnb.smoothdp.kernels) against the plain torch recursion and pytorch-crf:
values and gradients, lengths 1..T, ties, -BIG borders, huge scores, small gamma, second derivatives."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.smoothdp import ViterbiLoss, chain_potentials, viterbi, viterbi_marginals
from alignnb.smoothdp.kernels import _use_compiled_viterbi
from alignnb.smoothdp.viterbi import _viterbi_backward, _viterbi_forward


def _plain(theta, lengths, gamma):
    "The torch recursion's value (B,) and expected transitions (B, T, S, S), in float64."
    value, qs, q_end = _viterbi_forward(theta.double(), lengths, "entropy", gamma)
    return value, _viterbi_backward(qs, q_end, torch.ones_like(value), lengths)


def _fast(theta, lengths, gamma):
    th = theta.detach().clone().requires_grad_()
    value = viterbi(th, "entropy", gamma, lengths)
    value.sum().backward()
    return value.detach(), th.grad


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("gamma", [1.0, 0.3, 0.01])
def test_compiled_matches_plain(dtype, tol, gamma):
    g = torch.Generator().manual_seed(0)
    theta = 2 * torch.randn(6, 7, 5, 5, generator=g, dtype=dtype)
    lengths = torch.tensor([7, 1, 3, 7, 2, 5])
    assert _use_compiled_viterbi(theta, "entropy", gamma)
    value, grad = _fast(theta, lengths, gamma)
    ref_value, ref_grad = _plain(theta, lengths, gamma)
    torch.testing.assert_close(value.double(), ref_value, rtol=tol, atol=tol * 10)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol)
    assert (grad[1, 1:] == 0).all() and (grad[4, 2:] == 0).all()  # nothing beyond each length


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**31),
       st.sampled_from([0.05, 1.0, 4.0]), st.sampled_from([1.0, 100.0]))
def test_compiled_matches_plain_property(B, T, S, seed, gamma, scale):
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(B, T, S, S, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    value, grad = _fast(theta, lengths, gamma)
    ref_value, ref_grad = _plain(theta, lengths, gamma)
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-8)
    # each sequence's expected transitions sum to one per step inside its length: a property of (6)
    steps = grad.sum((-1, -2))
    inside = torch.arange(T) < lengths[:, None]
    torch.testing.assert_close(steps[inside], torch.ones(int(inside.sum()), dtype=torch.float64))


def test_ties_huge_values_and_borders():
    theta = torch.zeros(2, 4, 3, 3, dtype=torch.float64)  # all ties: uniform q
    value, grad = _fast(theta, None, 1.0)
    torch.testing.assert_close(value, torch.full((2,), 5 * np.log(3.0), dtype=torch.float64))  # 3^4 paths, 3 ends
    torch.testing.assert_close(grad, torch.full_like(theta, 1 / 9))
    big = torch.randn(2, 4, 3, 3, dtype=torch.float32) * 1e6  # huge scores: shifted exps stay finite
    for th in (big, chain_potentials(big[..., 0], torch.randn(3, 3))):  # -1e10 border at t = 0
        value, grad = _fast(th, None, 1.0)
        ref_value, ref_grad = _plain(th, torch.full((2,), 4), 1.0)
        torch.testing.assert_close(value.double(), ref_value, rtol=1e-6, atol=0.5)
        torch.testing.assert_close(grad.double(), ref_grad, rtol=0, atol=1e-4)


def test_tiny_gamma_takes_the_plain_path_in_float32():
    theta = torch.randn(2, 3, 2, 2)
    assert not _use_compiled_viterbi(theta, "entropy", 1e-39)  # 1 / gamma overflows float32
    assert _use_compiled_viterbi(theta.double(), "entropy", 1e-39)
    assert not _use_compiled_viterbi(theta, "l2", 1.0) and not _use_compiled_viterbi(theta.bfloat16(), "entropy", 1.0)
    assert not _use_compiled_viterbi(torch.randn(1, 2, 32, 32), "entropy", 1.0)  # many states: the torch steps


def test_second_derivatives_and_gradcheck():
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])
    assert torch.autograd.gradcheck(lambda th: viterbi(th, "entropy", 0.7, lengths), (theta,))
    assert torch.autograd.gradgradcheck(lambda th: viterbi(th, "entropy", 0.7, lengths), (theta,))
    hess_row = viterbi_marginals(theta, "entropy", 0.7, lengths, create_graph=True)[0, 1, 0, 0]
    hess_row.backward()
    assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_crf_through_viterbi_and_loss_against_pytorch_crf(dtype, tol):
    from torchcrf import CRF
    g = torch.Generator().manual_seed(5)
    B, T, S = 4, 6, 5
    crf = CRF(S, batch_first=True).to(dtype)
    emissions = torch.randn(B, T, S, generator=g, dtype=dtype)
    tags = torch.randint(0, S, (B, T), generator=g)
    lengths = torch.tensor([6, 1, 3, 5])
    mask = torch.arange(T) < lengths[:, None]
    e_peer = emissions.clone().requires_grad_()
    (-crf(e_peer, tags, mask=mask, reduction="sum")).backward()
    trans = crf.transitions.detach().T.clone().requires_grad_()
    start, end = crf.start_transitions.detach().clone().requires_grad_(), crf.end_transitions.detach().clone().requires_grad_()
    e_ours = emissions.clone().requires_grad_()
    theta = chain_potentials(e_ours, trans, start, end, lengths)
    ViterbiLoss("entropy", 1.0, "sum")(theta, tags, lengths).backward()
    for ours, peer in ((e_ours.grad, e_peer.grad), (trans.grad, crf.transitions.grad.T), (start.grad, crf.start_transitions.grad),
                       (end.grad, crf.end_transitions.grad)):
        torch.testing.assert_close(ours, peer, rtol=tol, atol=tol)
    e2 = emissions.clone().requires_grad_()  # the partition function alone, through viterbi
    log_z = viterbi(chain_potentials(e2, trans.detach(), start.detach(), end.detach(), lengths), "entropy", 1.0, lengths)
    peer_log_z = crf._compute_normalizer(emissions.transpose(0, 1), mask.transpose(0, 1))
    torch.testing.assert_close(log_z, peer_log_z, rtol=tol, atol=tol)


@pytest.mark.parametrize("with_start,with_end", [(False, False), (True, False), (False, True), (True, True)])
def test_chain_potentials_custom_backward_matches_broadcasting(with_start, with_end):
    from alignnb.smoothdp.viterbi import _chain_potentials_plain
    g = torch.Generator().manual_seed(9)
    B, T, S = 3, 5, 4
    args = [torch.randn(B, T, S, generator=g, dtype=torch.float64), torch.randn(S, S, generator=g, dtype=torch.float64),
            torch.randn(S, generator=g, dtype=torch.float64) if with_start else None,
            torch.randn(S, generator=g, dtype=torch.float64) if with_end else None]
    lengths = torch.tensor([5, 1, 3])
    weights = torch.randn(B, T, S, S, generator=g, dtype=torch.float64)
    outs = []
    for fn in (chain_potentials, _chain_potentials_plain):
        leaves = [a.clone().requires_grad_() if a is not None else None for a in args]
        theta = fn(*leaves, lengths)
        (theta * weights).sum().backward()
        outs.append((theta.detach(), [a.grad for a in leaves if a is not None]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    for a, b in zip(outs[0][1], outs[1][1]): torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    leaves = [a.clone().requires_grad_() if a is not None else None for a in args]  # second order through viterbi
    inputs = tuple(a for a in leaves if a is not None)
    assert torch.autograd.gradgradcheck(lambda *xs: viterbi(chain_potentials(*_refill(leaves, xs), lengths), "entropy", 1.0, lengths),
                                        inputs)


def _refill(leaves, xs):
    it = iter(xs)
    return [next(it) if a is not None else None for a in leaves]
