"Issue 14, smoothdp: every public boundary returns a finite, correctly shaped value or raises a named error."
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignnb.smoothdp import (SoftDTWLoss, argmax_omega, chain_potentials, dtw, dtw_alignment, max_omega, soft_dtw,
                              soft_dtw_barycenter, viterbi, viterbi_marginals)
from alignnb.smoothdp.smoothed_max import sparsemax

NAMED = (ValueError, TypeError)


def brute_viterbi_hard(theta):
    "Best path score of one (T, S, S) chain (any state y_0 before t = 0, as viterbi's v_0 = 0 allows), by enumeration."
    import itertools
    T, S, _ = theta.shape
    return max(sum(float(theta[t, seq[t + 1], seq[t]]) for t in range(T))
               for seq in itertools.product(range(S), repeat=T + 1))


# --- the cases, one by one ---------------------------------------------------------------------------------

@pytest.mark.parametrize("omega", ["entropy", "l2"])
def test_viterbi_tiny_gamma_is_the_hard_viterbi_not_nan(omega):
    theta = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    value = viterbi(theta, omega, 1e-39)  # was NaN (entropy) and an IndexError (l2): 1 / gamma overflowed float32
    assert torch.isfinite(value).all()
    assert value.item() == pytest.approx(brute_viterbi_hard(theta[0].double()), rel=1e-5)


def test_max_omega_l2_with_huge_scores():
    # was an IndexError: x / gamma = 6e38 overflowed float32 before sparsemax's shift
    assert max_omega(torch.tensor([3e38, 1.0]), "l2", 0.5).item() == pytest.approx(3e38, rel=1e-6)
    np.testing.assert_array_equal(argmax_omega(torch.tensor([3e38, 1.0]), "l2", 0.5).numpy(), [1.0, 0.0])


def test_sparsemax_on_nan_names_the_argument():
    with pytest.raises(ValueError, match="z of shape .* contains NaN"): sparsemax(torch.tensor([float("nan"), 1.0]))


@pytest.mark.parametrize("omega", ["entropy", "l2"])
def test_dtw_float32_huge_gamma_raises_instead_of_nan(omega):
    # the true value, gamma * DTW_1(theta / gamma) ~ gamma * DTW_1(0), is beyond float32's range: a named error, not NaN
    theta = torch.rand(1, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="dtw overflows torch.float32 .*gamma = 1e\\+308"): dtw(theta.float(), omega, 1e308)
    # in float64 it is finite (l2: about +gamma / 6 per cell) or beyond range (entropy: -gamma log(#paths) < -1.8e308)
    limit = 1e308 * dtw(torch.zeros_like(theta), omega, 1.0).item()
    if abs(limit) < np.finfo(np.float64).max: assert dtw(theta, omega, 1e308).item() == pytest.approx(limit, rel=1e-9)
    else:
        with pytest.raises(ValueError, match="dtw overflows torch.float64"): dtw(theta, omega, 1e308)


def test_dtw_large_gamma_is_not_bent_by_the_border():
    # gamma comparable to the finite border 1e10 used to let the border into the soft min; homogeneity fixes it:
    # DTW_gamma(theta) = gamma * DTW_1(theta / gamma), computed here at a harmless scale
    theta = torch.rand(1, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for gamma in (1e9, 1e12):
        expected = gamma * dtw(theta / gamma, "entropy", 1.0)
        torch.testing.assert_close(dtw(theta, "entropy", gamma), expected, rtol=1e-9, atol=0)


def test_empty_last_dimension_is_a_named_error():
    for f in (max_omega, argmax_omega, sparsemax):
        with pytest.raises(ValueError, match="no entries along dim=-1"): f(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="x must have shape .*d >= 1"): soft_dtw(torch.zeros(1, 3, 0), torch.zeros(1, 4, 0))


def test_integer_tensors_are_a_named_type_error():
    with pytest.raises(TypeError, match="z must be a floating tensor"): sparsemax(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        soft_dtw(torch.ones(1, 3, 2, dtype=torch.long), torch.ones(1, 4, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="series must be a floating tensor"):
        soft_dtw_barycenter(torch.ones(3, 5, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="theta must be a floating tensor"): viterbi(torch.ones(1, 2, 3, 3, dtype=torch.long))


def test_custom_cost_shape_is_checked():
    x, y = torch.rand(1, 3, 2), torch.rand(1, 4, 2)
    with pytest.raises(ValueError, match=r"cost\(x, y\) must return a tensor of shape \(B, m, n\) = \(1, 3, 4\), got \(1, 4, 3\)"):
        soft_dtw(x, y, cost=lambda a, b: torch.rand(1, 4, 3))  # was silently used as a 4 x 3 cost matrix
    with pytest.raises(ValueError, match="got float"): soft_dtw(x, y, cost=lambda a, b: 1.0)
    with pytest.raises(ValueError, match=r"cost\(x, y\) is not finite"): soft_dtw(x, y, cost=lambda a, b: torch.full((1, 3, 4), np.inf))


def test_barycenter_of_an_empty_set_and_bad_arguments():
    with pytest.raises(ValueError, match="series must have shape \\(N, m, d\\) with N, m, d >= 1, got \\(0, 5, 2\\)"):
        soft_dtw_barycenter(torch.zeros(0, 5, 2))  # was ZeroDivisionError
    with pytest.raises(ValueError, match="series of shape .* contains NaN"): soft_dtw_barycenter(torch.full((3, 5, 2), np.nan))
    with pytest.raises(ValueError, match="lengths must lie in"): soft_dtw_barycenter(torch.rand(3, 5, 2), lengths=[5, 6, 5])
    with pytest.raises(ValueError, match="weights must be"): soft_dtw_barycenter(torch.rand(3, 5, 2), weights=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="init must have shape"): soft_dtw_barycenter(torch.rand(3, 5, 2), init=torch.rand(4, 3))


def test_soft_dtw_errors_name_the_users_series_not_theta():
    y = torch.rand(1, 4, 2)
    for bad, text in ((torch.full((1, 3, 2), np.nan), "x of shape \\(1, 3, 2\\) contains NaN"),
                      (torch.full((1, 3, 2), np.inf), "x of shape \\(1, 3, 2\\) contains NaN or inf"),
                      (torch.full((1, 3, 2), 1e20), "cost\\(x, y\\) is not finite for finite x and y")):
        with pytest.raises(ValueError, match=text) as info: soft_dtw(bad, y)
        assert "theta" not in str(info.value)
    with pytest.raises(ValueError, match="y of shape"): SoftDTWLoss()(torch.rand(1, 3, 2), torch.full((1, 4, 2), np.nan))


def test_empty_batch_gives_an_empty_value():
    assert dtw(torch.rand(0, 4, 5)).shape == (0,)  # was a RuntimeError from max() of an empty tensor
    assert soft_dtw(torch.rand(0, 4, 2), torch.rand(0, 5, 2)).shape == (0,)
    assert viterbi(torch.rand(0, 4, 3, 3)).shape == (0,)


# --- bands for unequal lengths: the diagonal convention and tslearn's ----------------------------------------------

@pytest.mark.parametrize("m, n, w", [(15, 10, 5), (15, 10, 3), (10, 15, 3), (7, 12, 0), (12, 7, 1), (9, 9, 2), (11, 4, 0)])
def test_band_tslearn_matches_tslearn_sakoe_chiba_at_unequal_lengths(m, n, w):
    from tslearn.metrics import dtw as ts_dtw
    rng = np.random.default_rng(m * 100 + n * 10 + w)
    x, y = rng.normal(size=(m, 2)), rng.normal(size=(n, 2))
    reference = ts_dtw(x, y, global_constraint="sakoe_chiba", sakoe_chiba_radius=w) ** 2  # tslearn: sqrt of the cost
    ours = soft_dtw(torch.tensor(x)[None], torch.tensor(y)[None], omega="hard", bandwidth=w, band="tslearn")
    assert ours.item() == pytest.approx(reference, rel=1e-10)


def test_band_tslearn_matches_tslearn_soft_dtw_loss_and_padding():
    from tslearn.metrics import SoftDTWLossPyTorch
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(1, 15, 2, generator=g, dtype=torch.float64), torch.randn(1, 10, 2, generator=g, dtype=torch.float64)
    reference = SoftDTWLossPyTorch(gamma=0.3, global_constraint="sakoe_chiba", sakoe_chiba_radius=3)(x, y)
    torch.testing.assert_close(soft_dtw(x, y, 0.3, bandwidth=3, band="tslearn"), reference, rtol=1e-6, atol=1e-6)
    # padded: the offsets come from the true lengths, and padding changes nothing
    padded_x, padded_y = torch.cat([x, torch.zeros(1, 3, 2, dtype=x.dtype)], 1), torch.cat([y, torch.ones(1, 2, 2, dtype=y.dtype)], 1)
    torch.testing.assert_close(soft_dtw(padded_x, padded_y, 0.3, bandwidth=3, band="tslearn", lengths_x=[15], lengths_y=[10]),
                               reference, rtol=1e-6, atol=1e-6)


def test_band_diagonal_is_the_stated_convention():
    # |i - j| <= w at m != n: brute force over a masked recursion, and it differs from tslearn's band (the case)
    g = torch.Generator().manual_seed(4)
    theta = torch.rand(1, 15, 10, generator=g, dtype=torch.float64)
    R = np.full((16, 11), np.inf); R[0, 0] = 0
    for i in range(1, 16):
        for j in range(1, 11):
            if abs(i - j) <= 5: R[i, j] = theta[0, i - 1, j - 1].item() + min(R[i - 1, j], R[i, j - 1], R[i - 1, j - 1])
    assert dtw(theta, "hard", bandwidth=5).item() == pytest.approx(R[15, 10], rel=1e-12)
    assert dtw(theta, "hard", bandwidth=5).item() != pytest.approx(dtw(theta, "hard", bandwidth=5, band="tslearn").item())
    with pytest.raises(ValueError, match="bandwidth=3 leaves no path.*band='tslearn'"): dtw(theta, bandwidth=3)
    assert torch.isfinite(dtw(theta, bandwidth=3, band="tslearn")).all()  # tslearn's band accepts it
    with pytest.raises(ValueError, match="band must be 'diagonal' or 'tslearn'"): dtw(theta, bandwidth=3, band="slanted")
    with pytest.raises(ValueError, match="one length difference"):
        dtw(torch.rand(2, 6, 6), bandwidth=1, band="tslearn", lengths_x=[6, 5], lengths_y=[6, 6])


def test_band_tslearn_gradient_lives_in_the_band():
    theta = torch.rand(1, 12, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    alignment = dtw_alignment(theta, "entropy", 0.5, bandwidth=1, band="tslearn")[0]
    from tslearn.metrics import sakoe_chiba_mask
    mask = torch.as_tensor(np.asarray(sakoe_chiba_mask(12, 7, radius=1)))
    assert (alignment[~mask] == 0).all() and alignment[mask].sum() > 0


# --- property test: every input kind gives a finite, correctly shaped value or a named error ----------------------

SPECIAL = st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e38, -1e38, 3e38, 1e-39, 1e-45, 1e300])
GAMMAS = st.one_of(st.sampled_from([1e-300, 1e-39, 1e-4, 1.0, 1e9, 1e38, 1e308, 0.0, -1.0, np.nan, np.inf]),
                   st.floats(1e-3, 1e3))


def tensors(draw, shape):
    "A tensor of `shape` with random values, some replaced by special ones, in a random dtype."
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.int64]))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=shape) * draw(st.sampled_from([1e-3, 1.0, 1e6]))
    flat = values.reshape(-1)
    for _ in range(draw(st.integers(0, 2))):
        if flat.size: flat[draw(st.integers(0, flat.size - 1))] = draw(SPECIAL)
    if dtype == torch.int64: return torch.tensor(np.nan_to_num(values).clip(-1e6, 1e6)).long()
    return torch.tensor(values, dtype=dtype)


def check(call, expected_shape):
    "Either a named error, or a finite result of the expected shape."
    try:
        out = call()
    except NAMED as error:
        assert str(error), "an empty message"
        return
    assert out.shape == expected_shape, (out.shape, expected_shape)
    assert torch.isfinite(out).all(), out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_public_api_finite_or_named_error(data):
    d = data.draw
    omega, gamma = d(st.sampled_from(["entropy", "l2", "hard"])), d(GAMMAS)
    case = d(st.sampled_from(["max", "argmax", "sparsemax", "viterbi", "dtw", "soft_dtw", "chain", "marginals"]))
    B, a, b, c = d(st.integers(0, 2)), d(st.integers(0, 4)), d(st.integers(0, 4)), d(st.integers(0, 3))
    if case == "max": check(lambda: max_omega(tensors(d, (B, a)), omega, gamma), (B,))
    elif case == "argmax": check(lambda: argmax_omega(tensors(d, (B, a)), omega, gamma), (B, a))
    elif case == "sparsemax": check(lambda: sparsemax(tensors(d, (B, a))), (B, a))
    elif case == "viterbi": check(lambda: viterbi(tensors(d, (B, a, b, d(st.sampled_from([b, b + 1])))), omega, gamma), (B,))
    elif case == "marginals":
        check(lambda: viterbi_marginals(tensors(d, (B, a, b, b)), omega, gamma), (B, a, b, b))
    elif case == "dtw":
        bandwidth = d(st.one_of(st.none(), st.integers(-1, 3)))
        band = d(st.sampled_from(["diagonal", "tslearn", "other"]))
        check(lambda: dtw(tensors(d, (B, a, b)), omega, gamma, bandwidth, band=band), (B,))
    elif case == "soft_dtw":
        check(lambda: soft_dtw(tensors(d, (B, a, c)), tensors(d, (d(st.sampled_from([B, B + 1])), b, c)), gamma, omega,
                               normalize=d(st.booleans())), (B,))
    else:
        check(lambda: viterbi(chain_potentials(tensors(d, (B, a, b)), tensors(d, (b, b)), tensors(d, (b,))), omega, gamma), (B,))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_barycenter_finite_or_named_error(data):
    d = data.draw
    N, m, dim = d(st.integers(0, 3)), d(st.integers(0, 4)), d(st.integers(0, 2))
    check(lambda: soft_dtw_barycenter(tensors(d, (N, m, dim)), d(GAMMAS), max_iter=3), (m, dim))


def test_gradient_helpers_check_before_requires_grad():
    from alignnb.smoothdp import viterbi_decode
    with pytest.raises(TypeError, match="theta must be a floating tensor"): viterbi_marginals(torch.zeros(1, 2, 3, 3).long())
    with pytest.raises(TypeError, match="theta must be a floating tensor"): dtw_alignment(torch.zeros(1, 2, 3).long())
    with pytest.raises(TypeError, match="theta must be a torch.Tensor"): viterbi_decode([[1.0]])
