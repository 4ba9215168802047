"""Cross-checks of alignnb.smoothdp against tslearn, pysdtw and pytorch-crf, plus hypothesis fuzzing.

Conventions: tslearn's `soft_dtw(x, y, gamma)` and `soft_dtw_alignment` use the squared Euclidean cost
||x_i - y_j||^2 and return R_mn and the expected alignment E, exactly our `soft_dtw(..., omega="entropy")` and
`dtw_alignment`. pysdtw's `SoftDTW(gamma, use_cuda=False)` is the same quantity, but it stores R as float32
internally, so we compare it at float32 tolerance. pytorch-crf's `CRF(tags)` has `transitions[i, j]` = score of
tag i followed by tag j (the transpose of ours) and returns the log-likelihood score - log Z, the negative of our
entropy `ViterbiLoss` with gamma = 1.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

import pysdtw
from torchcrf import CRF
from tslearn.metrics import SoftDTWLossPyTorch, soft_dtw as ts_soft_dtw, soft_dtw_alignment as ts_soft_dtw_alignment

from alignnb.smoothdp import (ViterbiLoss, chain_potentials, dtw, dtw_alignment, path_score, soft_dtw,
                              viterbi, viterbi_decode, viterbi_hvp, viterbi_marginals)


def _series(seed, B, m, n, d, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, m, d, generator=g, dtype=dtype), torch.randn(B, n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("gamma", [0.01, 0.1, 1.0, 10.0])
def test_soft_dtw_matches_tslearn_value_and_alignment(gamma):
    x, y = _series(0, 3, 17, 11, 4)
    ours = soft_dtw(x, y, gamma)
    costs = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
    alignment = dtw_alignment(costs, "entropy", gamma)
    for b in range(3):
        reference_alignment, reference_value = ts_soft_dtw_alignment(x[b].numpy(), y[b].numpy(), gamma=gamma)
        np.testing.assert_allclose(ours[b].item(), ts_soft_dtw(x[b].numpy(), y[b].numpy(), gamma=gamma), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ours[b].item(), reference_value, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(alignment[b].numpy(), reference_alignment, atol=1e-9)


def test_soft_dtw_gradient_matches_tslearn_alignment_chain_rule():
    x, y = _series(1, 2, 9, 13, 3)
    x.requires_grad_()
    soft_dtw(x, y, 0.5).sum().backward()
    for b in range(2):
        E, _ = ts_soft_dtw_alignment(x[b].detach().numpy(), y[b].numpy(), gamma=0.5)
        expected = 2 * (E.sum(1)[:, None] * x[b].detach().numpy() - E @ y[b].numpy())  # d/dx_i = Σ_j E_ij 2(x_i - y_j)
        np.testing.assert_allclose(x.grad[b].numpy(), expected, atol=1e-9)


def test_unequal_lengths_match_tslearn_per_pair():
    x, y = _series(2, 3, 12, 10, 2)
    lx, ly = torch.tensor([12, 7, 3]), torch.tensor([10, 10, 4])
    ours = soft_dtw(x, y, 0.3, lengths_x=lx, lengths_y=ly)
    for b in range(3):
        reference = ts_soft_dtw(x[b, :lx[b]].numpy(), y[b, :ly[b]].numpy(), gamma=0.3)
        np.testing.assert_allclose(ours[b].item(), reference, rtol=1e-10)


def test_matches_pysdtw_with_packed_lengths():
    x, y = _series(3, 4, 20, 16, 3, torch.float32)
    lx, ly = torch.tensor([20, 15, 9, 4]), torch.tensor([16, 16, 5, 8])
    pack = lambda s, lengths: torch.nn.utils.rnn.pack_padded_sequence(s, lengths, batch_first=True, enforce_sorted=False)
    reference = pysdtw.SoftDTW(gamma=0.5, use_cuda=False)(pack(x, lx), pack(y, ly))
    ours = soft_dtw(x, y, 0.5, lengths_x=lx, lengths_y=ly)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)  # pysdtw stores R in float32


def test_matches_tslearn_pytorch_loss_normalized_and_banded():
    x, y = _series(4, 3, 15, 15, 2)
    reference = SoftDTWLossPyTorch(gamma=0.2, normalize=True)(x, y)
    torch.testing.assert_close(soft_dtw(x, y, 0.2, normalize=True), reference, rtol=1e-6, atol=1e-6)
    banded = SoftDTWLossPyTorch(gamma=0.2, global_constraint="sakoe_chiba", sakoe_chiba_radius=3)(x, y)
    torch.testing.assert_close(soft_dtw(x, y, 0.2, bandwidth=3), banded, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(soft_dtw(x, y, 0.2), banded)  # the band matters on these inputs


def _crf_inputs(seed, B=4, T=7, S=5):
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(B, T, S, generator=g, dtype=torch.float64, requires_grad=True)
    tags = torch.randint(0, S, (B, T), generator=g)
    lengths = torch.tensor([T, T - 2, 3, 1][:B])
    crf = CRF(S, batch_first=True).double()
    with torch.no_grad():
        for p in (crf.transitions, crf.start_transitions, crf.end_transitions): p.copy_(torch.randn(p.shape, generator=g))
    return emissions, tags, lengths, crf


def test_entropy_viterbi_loss_matches_pytorch_crf_likelihood_and_gradients():
    emissions, tags, lengths, crf = _crf_inputs(5)
    mask = torch.arange(emissions.shape[1]) < lengths[:, None]
    reference = -crf(emissions, tags, mask=mask, reduction="none")
    ref_grads = torch.autograd.grad(reference.sum(), (emissions, crf.transitions, crf.start_transitions, crf.end_transitions))
    transitions = crf.transitions.detach().T.clone().requires_grad_()  # ours: [i, j] = tag j followed by tag i
    start, end = crf.start_transitions.detach().clone().requires_grad_(), crf.end_transitions.detach().clone().requires_grad_()
    theta = chain_potentials(emissions, transitions, start, end, lengths)
    ours = ViterbiLoss("entropy", 1.0, reduction="none")(theta, tags, lengths)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(ours.sum(), (emissions, transitions, start, end))
    torch.testing.assert_close(grads[0], ref_grads[0], rtol=1e-9, atol=1e-9)  # token marginals - gold one-hot
    torch.testing.assert_close(grads[1], ref_grads[1].T, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grads[2], ref_grads[2], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grads[3], ref_grads[3], rtol=1e-9, atol=1e-9)


def test_viterbi_decode_matches_pytorch_crf_decode():
    emissions, _, lengths, crf = _crf_inputs(6)
    mask = torch.arange(emissions.shape[1]) < lengths[:, None]
    reference = crf.decode(emissions.detach(), mask=mask)
    theta = chain_potentials(emissions.detach(), crf.transitions.detach().T, crf.start_transitions.detach(), crf.end_transitions.detach(), lengths)
    scores, tags = viterbi_decode(theta, lengths)
    for b, path in enumerate(reference):
        assert tags[b, :len(path)].tolist() == path
        assert (tags[b, len(path):] == -1).all()
    torch.testing.assert_close(scores, path_score(theta, tags.clamp_min(0), lengths))


def test_entropy_viterbi_temperature_is_rescaled_partition():
    emissions, _, lengths, crf = _crf_inputs(7)
    theta = chain_potentials(emissions.detach(), crf.transitions.detach().T, crf.start_transitions.detach(), crf.end_transitions.detach(), lengths)
    gamma = 0.3
    # Vit_γ(θ) = γ Vit_1(θ / γ), and pytorch-crf's log Z at emission/transition scale 1/γ gives Vit_1(θ / γ)
    scaled = CRF(5, batch_first=True).double()
    with torch.no_grad():
        for p, q in zip((scaled.transitions, scaled.start_transitions, scaled.end_transitions), (crf.transitions, crf.start_transitions, crf.end_transitions)): p.copy_(q / gamma)
    mask = torch.arange(emissions.shape[1]) < lengths[:, None]
    tags = torch.zeros(emissions.shape[:2], dtype=torch.long)
    log_z = -scaled(emissions.detach() / gamma, tags, mask=mask, reduction="none") + path_score(theta / gamma, tags, lengths)
    torch.testing.assert_close(viterbi(theta, "entropy", gamma, lengths), gamma * log_z, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 3), m=st.integers(1, 9), n=st.integers(1, 9), omega=st.sampled_from(["entropy", "l2", "hard"]),
       gamma=st.floats(1e-4, 1e2), scale=st.floats(1e-3, 1e4), band_extra=st.one_of(st.none(), st.integers(0, 4)),
       seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_fuzz_dtw_finite_and_padding_invariant(B, m, n, omega, gamma, scale, band_extra, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.rand(B, m, n, generator=g, dtype=dtype)
    lx, ly = torch.randint(1, m + 1, (B,), generator=g), torch.randint(1, n + 1, (B,), generator=g)
    band = None if band_extra is None else int((lx - ly).abs().max()) + band_extra
    value = dtw(theta, omega, gamma, band, lx, ly)
    alignment = dtw_alignment(theta, omega, gamma, band, lx, ly)
    assert torch.isfinite(value).all() and torch.isfinite(alignment).all()
    assert (alignment >= -1e-6).all()
    for b in range(B):  # padding never changes a sequence's value, and the alignment ends at (L_x, L_y)
        alone = dtw(theta[b:b + 1, :lx[b], :ly[b]], omega, gamma, band)
        torch.testing.assert_close(value[b:b + 1], alone, rtol=1e-5, atol=1e-5 * scale)
        assert abs(alignment[b, lx[b] - 1, ly[b] - 1].item() - 1) < 1e-5 and abs(alignment[b, 0, 0].item() - 1) < 1e-5
        assert alignment[b, lx[b]:].abs().sum() == 0 and alignment[b, :, ly[b]:].abs().sum() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 4), m=st.integers(1, 12), n=st.integers(1, 12), omega=st.sampled_from(["entropy", "l2", "hard"]),
       gamma=st.floats(1e-2, 1e1), scale=st.floats(1e-2, 1e2), band_extra=st.one_of(st.none(), st.integers(0, 3)),
       seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_fuzz_compiled_sweep_equals_wavefront(B, m, n, omega, gamma, scale, band_extra, seed, dtype):
    "The Numba row sweep (CPU path) and the anti-diagonal wavefront (CUDA and second-order path) give the same values and alignments."
    from alignnb.smoothdp.kernels import _dtw_backward_fast, _dtw_compiled, _dtw_compiled_backward, _dtw_forward_fast
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.rand(B, m, n, generator=g, dtype=dtype)
    lx, ly = torch.randint(1, m + 1, (B,), generator=g), torch.randint(1, n + 1, (B,), generator=g)
    # the band as offsets (a, b): -a <= j - i <= b, asymmetric too (what band='tslearn' makes for m != n)
    gap = ly - lx
    band = None if band_extra is None else (max(0, -int(gap.min())) + band_extra, max(0, int(gap.max())) + seed % 3)
    grad = torch.randn(B, generator=g, dtype=dtype)
    value, qs = _dtw_forward_fast(theta, lx, ly, omega, gamma, band)
    compiled_value, Q = _dtw_compiled(theta, lx, ly, omega, gamma, band)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(compiled_value, value, rtol=tol, atol=tol * scale)
    if omega == "entropy" or dtype == torch.float64:  # float32 near-ties may flip an l2 support or a hard argmin between the two orders of operations
        torch.testing.assert_close(_dtw_compiled_backward(Q, grad, lx, ly, band, n), _dtw_backward_fast(qs, grad, lx, ly, theta.shape, band), rtol=10 * tol, atol=10 * tol)


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), S=st.integers(1, 5), omega=st.sampled_from(["entropy", "l2", "hard"]),
       gamma=st.floats(1e-4, 1e2), scale=st.floats(1e-3, 1e4), seed=st.integers(0, 2**16))
def test_fuzz_viterbi_marginals_are_distributions(B, T, S, omega, gamma, scale, seed):
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(B, T, S, S, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    marginals = viterbi_marginals(theta, omega, gamma, lengths)
    assert torch.isfinite(viterbi(theta, omega, gamma, lengths)).all() and torch.isfinite(marginals).all()
    inside = (torch.arange(T) < lengths[:, None]).float()
    torch.testing.assert_close(marginals.sum((2, 3)), inside, atol=1e-4, rtol=1e-4)  # one transition per step


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_fuzz_bad_input_raises_value_or_type_error(data):
    case = data.draw(st.sampled_from(["batch", "dim", "dtype", "gamma", "nan", "length", "band", "omega", "vit_shape"]))
    x, y = torch.rand(2, 5, 3), torch.rand(2, 4, 3)
    calls = {
        "batch": lambda: soft_dtw(x, torch.rand(3, 4, 3)),
        "dim": lambda: soft_dtw(x, torch.rand(2, 4, data.draw(st.integers(4, 8)))),
        "dtype": lambda: soft_dtw(x, y.double()),
        "gamma": lambda: dtw(torch.rand(2, 5, 4), gamma=data.draw(st.one_of(st.floats(max_value=0.0), st.just(float("inf")), st.just(float("nan"))))),
        "nan": lambda: dtw(torch.rand(2, 5, 4).index_put_((torch.tensor([1]), torch.tensor([2]), torch.tensor([3])), torch.tensor(data.draw(st.sampled_from([float("nan"), float("inf")]))))),
        "length": lambda: dtw(torch.rand(2, 5, 4), lengths_x=torch.tensor([5, data.draw(st.one_of(st.integers(6, 50), st.integers(-5, 0)))])),
        "band": lambda: dtw(torch.rand(2, 9, 4), bandwidth=data.draw(st.one_of(st.integers(-3, 4), st.just(2.5)))),
        "omega": lambda: viterbi(torch.rand(1, 2, 3, 3), omega=data.draw(st.text(max_size=5).filter(lambda s: s not in ("entropy", "l2", "hard")))),
        "vit_shape": lambda: viterbi(torch.rand(1, 2, 3, data.draw(st.integers(4, 6)))),
    }
    with pytest.raises((ValueError, TypeError)) as error:
        calls[case]()
    message = str(error.value)
    assert any(name in message for name in ("x and y", "gamma", "theta", "lengths_x", "bandwidth", "omega"))


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch-struct's distributions predate `arg_constraints`
@pytest.mark.parametrize("gamma", [1.0, 0.2])
def test_entropy_viterbi_matches_torch_struct_partition_and_marginals(gamma):
    # torch-struct's LinearChainCRF takes log-potentials [b, n, z_{n+1}, z_n] over N states, our θ_{t,i,j} over the
    # T + 1 states y_{-1}..y_{T-1}; it has no temperature, so Vit_γ(θ) = γ log Z(θ / γ) and the marginals are equal.
    from torch_struct import LinearChainCRF
    g = torch.Generator().manual_seed(8)
    theta = 3 * torch.randn(3, 6, 4, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 1])
    reference = LinearChainCRF(theta / gamma, lengths=lengths + 1)
    torch.testing.assert_close(viterbi(theta, "entropy", gamma, lengths), gamma * reference.partition, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(viterbi_marginals(theta, "entropy", gamma, lengths), reference.marginals, rtol=1e-9, atol=1e-9)
    hard = LinearChainCRF(theta, lengths=lengths + 1).argmax  # (B, T, S, S) one-hot best path
    torch.testing.assert_close(viterbi_marginals(theta, "hard", 1.0, lengths), hard.to(theta.dtype))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_viterbi_hvp_matches_autograd_hessian_of_torch_struct_partition():
    # torch-struct computes log Z with plain autograd-able operations, so autograd's double backward through it is an
    # independent Hessian of Vit_γ(θ) = γ log Z(θ / γ).
    from torch_struct import LinearChainCRF
    g = torch.Generator().manual_seed(9)
    theta = torch.randn(2, 5, 3, 3, generator=g, dtype=torch.float64)
    direction = torch.randn(2, 5, 3, 3, generator=g, dtype=torch.float64)
    lengths, gamma = torch.tensor([5, 2]), 0.7
    partition = lambda th: (gamma * LinearChainCRF(th / gamma, lengths=lengths + 1).partition).sum()
    _, reference = torch.autograd.functional.hvp(partition, theta, direction)
    torch.testing.assert_close(viterbi_hvp(theta, direction, "entropy", gamma, lengths), reference, rtol=1e-9, atol=1e-9)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_structured_attention_is_normalised_torch_struct_marginals_and_differentiable():
    "Entropy structured attention = P(z_t = 1) under torch-struct's CRF marginals, normalised; gradcheck goes through the double backward."
    from torch_struct import LinearChainCRF
    from alignnb.smoothdp import structured_attention
    g = torch.Generator().manual_seed(11)
    theta = torch.randn(3, 7, 2, 2, generator=g, dtype=torch.float64)
    lengths = torch.tensor([7, 5, 2])
    attended = LinearChainCRF(theta, lengths=lengths + 1).marginals[:, :, 1, :].sum(-1)
    expected = attended / attended.sum(-1, keepdim=True)
    torch.testing.assert_close(structured_attention(theta, "entropy", 1.0, lengths), expected, rtol=1e-9, atol=1e-9)
    for omega in ("entropy", "l2"):
        weights = structured_attention(theta, omega, 0.7, lengths)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, dtype=torch.float64))
        assert (weights[torch.arange(7) >= lengths[:, None]] == 0).all()
        th = theta.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda t: structured_attention(t, omega, 0.7, lengths), (th,), eps=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="theta must have shape"): structured_attention(torch.zeros(2, 5, 3, 3))
    with pytest.raises(TypeError, match="theta must be a torch.Tensor"): structured_attention([[1.0]])
    # when the skip-everything sequence takes all the mass, the weights fall back to uniform over the valid positions
    skip = torch.zeros(2, 5, 2, 2, dtype=torch.float64); skip[:, :, 1, :] = -10
    torch.testing.assert_close(structured_attention(skip, "l2", 1.0, torch.tensor([5, 2])),
                               torch.tensor([[0.2] * 5, [0.5, 0.5, 0, 0, 0]], dtype=torch.float64))


def test_dtw_rejects_float16_and_a_gamma_below_float32_is_the_hard_limit():
    with pytest.raises(TypeError, match="float16"): dtw(torch.rand(1, 3, 3, dtype=torch.float16))
    # gamma = 1e-50 is 0 in float32; the smoothed value is within 1e-50 * log(3) * (m + n) of the hard DTW,
    # far below float32's resolution, so the hard value (computed in float64 here) is the right answer
    theta = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))
    for omega in ("entropy", "l2"):
        torch.testing.assert_close(dtw(theta, omega, 1e-50), dtw(theta.double(), "hard").float())
