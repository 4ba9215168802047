"Issue 14, preference: every public boundary returns a finite, correctly shaped value or raises a named error."
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignnb.preference import (dpo_loss, exploitability, ipo_loss, laboratory_game, nash_md_pg_loss,
                                preference_margin, slic_loss, soft_label, solve_regularised_nash, tabular_loss)

LOSSES = {"ipo": ipo_loss, "dpo": dpo_loss, "slic": slic_loss}


def brute_nash(P, pi_ref, tau, iters=20000):
    "Independent check: damped fixed-point iteration of pi = softmax(log pi_ref + P pi / tau) in float64."
    pi = pi_ref.clone()
    for _ in range(iters): pi = 0.99 * pi + 0.01 * torch.softmax(pi_ref.log() + P @ pi / tau, 0)
    return pi


# --- the cases -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_on_an_empty_batch_raise_instead_of_nan(name):
    empty = torch.zeros(0, dtype=torch.float64)
    with pytest.raises(ValueError, match="the batch is empty"): LOSSES[name](empty, empty, empty, empty, tau=0.1)
    assert LOSSES[name](empty, empty, empty, empty, tau=0.1, reduction="none").shape == (0,)


def test_tabular_loss_rejects_theta_of_the_wrong_length():
    g = laboratory_game()
    with pytest.raises(ValueError, match=r"theta must be a floating tensor of shape \(5,\).*got torch.Size\(\[3\]\)"):
        tabular_loss(torch.zeros(3, dtype=torch.float64, requires_grad=True), g.P_cyc, g.pi_ref, 0.1, "ipo")
    with pytest.raises(ValueError, match="theta must be"): tabular_loss(torch.zeros(5, dtype=torch.long), g.P_cyc, g.pi_ref, 0.1, "ipo")


def test_solve_regularised_nash_in_float32_is_fast_and_right():
    g = laboratory_game()
    pi32 = solve_regularised_nash(g.P_cyc.float(), g.pi_ref.float(), 0.1, max_iter=5000)  # was 28 s, then RuntimeError
    assert pi32.dtype == torch.float32
    torch.testing.assert_close(pi32.double(), brute_nash(g.P_cyc, g.pi_ref, 0.1), rtol=0, atol=1e-6)
    assert float(exploitability(pi32.double(), g.P_cyc, g.pi_ref, 0.1)) < 1e-6


def test_solve_regularised_nash_on_numpy_names_the_type():
    g = laboratory_game()
    with pytest.raises(TypeError, match="P must be a torch.Tensor, got ndarray"):
        solve_regularised_nash(g.P_cyc.numpy(), g.pi_ref, 0.1)  # said "must be a square (K, K) Tensor, got (3, 3)"
    with pytest.raises(TypeError, match="pi_ref must be a torch.Tensor, got ndarray"):
        solve_regularised_nash(g.P_cyc, g.pi_ref.numpy(), 0.1)
    with pytest.raises(ValueError, match=r"P must have a square shape \(K, K\).*got \(5, 4\)"):
        solve_regularised_nash(g.P_cyc[:, :4], g.pi_ref, 0.1)


def test_preference_pairs_lives_in_rewards():
    # preference_pairs (the utility-shape case of the issue) is alignnb.rewards', not this package's
    import alignnb.preference as preference
    assert not hasattr(preference, "preference_pairs")


def test_nan_log_probabilities_are_named():
    nan, zero = torch.tensor([float("nan"), 0.0]), torch.zeros(2)
    for loss in LOSSES.values():
        with pytest.raises(ValueError, match="must be finite"): loss(nan, zero, zero, zero, tau=0.1)
    with pytest.raises(ValueError, match="preference must lie in"): nash_md_pg_loss(zero, zero, nan, tau=0.1)


def test_masked_out_minus_inf_is_ignored():
    logp = torch.tensor([[-1.0, -2.0, float("-inf")]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    margin = preference_margin(logp, logp * 0 - 1, logp * 0, logp * 0, mask, mask)
    torch.testing.assert_close(margin, torch.tensor([-3.0 + 2.0], dtype=torch.float64))


# --- property tests ------------------------------------------------------------------------------------------------

SPECIAL = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300])


def values(draw, shape, dtype):
    x = np.random.default_rng(draw(st.integers(0, 999))).normal(size=shape) - 3
    if x.size and draw(st.booleans()): x.flat[draw(st.integers(0, x.size - 1))] = draw(SPECIAL)
    return torch.tensor(x).to(dtype) if dtype != torch.long else torch.tensor(np.nan_to_num(x)).clamp(-9, 9).long()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_losses_finite_or_named_error(data):
    d = data.draw
    B, T = d(st.integers(0, 3)), d(st.sampled_from([None, 1, 3]))
    dtype = d(st.sampled_from([torch.float32, torch.float64, torch.long]))
    shape = (B,) if T is None else (B, T)
    args = [values(d, d(st.sampled_from([shape, (B + 1,) + shape[1:]])) if i == 1 else shape, dtype) for i in range(4)]
    tau = d(st.one_of(SPECIAL, st.floats(1e-3, 10)))
    reduction = d(st.sampled_from(["mean", "none", "sum"]))
    loss = LOSSES[d(st.sampled_from(list(LOSSES)))]
    try:
        if d(st.booleans()):
            out = soft_label(loss, torch.rand(B, dtype=torch.float64), *args, tau=tau, reduction=reduction)
        else: out = loss(*args, tau=tau, reduction=reduction)
    except (ValueError, TypeError) as error:
        assert str(error)
        return
    assert out.shape == (() if reduction == "mean" else (B,)) and torch.isfinite(out).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_games_finite_or_named_error(data):
    d = data.draw
    g = laboratory_game()
    dtype = d(st.sampled_from([torch.float32, torch.float64]))
    P, pi_ref = g.P_cyc.to(dtype), g.pi_ref.to(dtype)
    case = d(st.sampled_from(["nan", "shape", "numpy", "ref", "ok", "tau"]))
    tau = d(st.one_of(SPECIAL, st.floats(0.05, 2))) if case == "tau" else 0.1
    if case == "nan": P = P.clone(); P[0, 1] = float("nan")
    if case == "shape": P = P[:, :d(st.integers(0, 4))]
    if case == "numpy": P = P.numpy()
    if case == "ref": pi_ref = pi_ref[:d(st.integers(0, 4))]
    try:
        pi = solve_regularised_nash(P, pi_ref, tau, max_iter=20000)
        loss = tabular_loss(pi_ref.log().requires_grad_(), P, pi_ref, tau, d(st.sampled_from(["ipo", "dpo", "ipo_md"])))
    except (ValueError, TypeError) as error:
        assert str(error)
        return
    assert pi.shape == (5,) and torch.isfinite(pi).all() and abs(float(pi.sum()) - 1) < 1e-5
    assert loss.shape == () and torch.isfinite(loss)
