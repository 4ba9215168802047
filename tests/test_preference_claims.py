"""The claim logic of the preference reproduction: crossed bootstrap, Table 2 claims, exact tabular claims, paired
win rates with common random numbers, the judge's Bradley-Terry reward and the residual-head policy."""
import dataclasses

import numpy as np
import pytest
import torch

from alignnb.core import bootstrap_interval
from alignnb.preference import (MajorityJudge, ResidualHeadPolicy, TabularLabConfig, crossed_resamples,
                                laboratory_game, per_prompt_win_rates, policy_completions, run_tabular_lab,
                                self_play_cosines, table_2_claim, tabular_claims)


def _cells(mean, prompts=20, seeds=3, prompt_sd=0.03, seed_sd=0.0, noise_sd=0.01, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    return (mean + prompt_sd * rng.standard_normal((prompts, 1)) + seed_sd * rng.standard_normal((1, seeds))
            + noise_sd * rng.standard_normal((prompts, seeds)))


@pytest.mark.parametrize("mean, expected", [(0.6, "held"), (0.4, "not held"), (0.5, "not resolved")])
def test_table_2_claim_verdicts_from_synthetic_cells(mean, expected):
    claim = table_2_claim("ipo", "rl", _cells(mean))
    assert claim.verdict == expected
    assert claim.low <= claim.estimate <= claim.high and claim.threshold == 0.5
    assert claim.paper.startswith("0.791")  # the paper's IPO vs RL


def test_one_seed_is_never_resolved():
    claim = table_2_claim("ipo_md", "dpo", _cells(0.9, seeds=1))  # a clear win on one training run
    assert (claim.low, claim.high, claim.verdict) == (0.0, 1.0, "not resolved")


def test_seed_to_seed_spread_widens_the_interval():
    "Tight prompts but training runs that disagree: resampling prompts alone would say `held`, the crossed one not."
    cells = _cells(0.54, prompt_sd=0.005, noise_sd=0.002) + np.array([-0.12, 0.02, 0.1])  # three runs disagree
    _, low_prompts, _ = bootstrap_interval(cells.mean(1))
    assert low_prompts > 0.5
    assert table_2_claim("ipo", "slic", cells).verdict == "not resolved"
    # with no seed effect the crossed bootstrap adds little to the prompts-only spread
    flat = np.repeat(_cells(0.55, seeds=1, noise_sd=0.0), 3, axis=1)
    _, lo, hi = bootstrap_interval(flat.mean(1))
    assert crossed_resamples(flat).std() == pytest.approx((hi - lo) / 3.92, rel=0.25)


def test_crossed_resamples_validates_shape():
    with pytest.raises(ValueError, match="shape"):
        crossed_resamples(np.ones((1, 3)))
    assert crossed_resamples(np.ones((4, 2, 3, 3)), n_resamples=5).shape == (5, 3, 3)


def test_tabular_claims_hold_and_can_fail():
    lab = TabularLabConfig.quick()
    game = laboratory_game()
    runs = run_tabular_lab(game.P_cyc, game.pi_ref, game.mu, lab)
    claims = {c.name: c for c in tabular_claims(runs, lab)}
    assert {c.verdict for c in claims.values()} == {"held"}
    assert all(c.interval == "exact" and c.low == c.high == c.estimate for c in claims.values())
    # swap online IPO's and online DPO's runs: both equilibrium claims must then fail
    swapped = dataclasses.replace(runs, online_ipo=runs.online_dpo, online_dpo=runs.online_ipo)
    broken = {c.name: c.verdict for c in tabular_claims(swapped, lab)}
    assert broken["prop_4_1_online_ipo_nash"] == "not held" and broken["online_dpo_not_nash"] == "not held"
    # IPO-MD's run in place of offline IPO's: not at the mu-dependent optimum
    wrong = dataclasses.replace(runs, offline_ipo=runs.ipo_md)
    assert {c.name: c.verdict for c in tabular_claims(wrong, lab)}["prop_4_1_offline_ipo_mu"] == "not held"


def test_self_play_cosines_are_one_and_reject_a_wrong_tau():
    game = laboratory_game()
    assert min(self_play_cosines(game.P_cyc, game.pi_ref, 0.1)) > 1 - 1e-9
    # the self-play gradient at another tau is not parallel to online IPO's at tau = 0.1
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(5, generator=generator, dtype=torch.float64).requires_grad_(True)
    from alignnb.preference import tabular_loss
    grad_ipo, = torch.autograd.grad(tabular_loss(theta, game.P_cyc, game.pi_ref, 0.1, "ipo"), theta)
    pi = theta.softmax(0)
    J = pi @ game.P_cyc @ pi.detach() - 1.0 * (pi * (pi / game.pi_ref).log()).sum()
    grad_j, = torch.autograd.grad(J, theta)
    assert float(torch.nn.functional.cosine_similarity(-grad_ipo, grad_j, dim=0)) < 1 - 1e-3


def _by_length(prompts, a, b):
    return torch.tensor([float(len(u) > len(v)) + 0.5 * (len(u) == len(v)) for u, v in zip(a, b)])


def test_win_rates_pair_the_jth_completions():
    # paired: aaa > aa, a < aaaa -> 1/2; judged all against all it would be 1/4
    rates = per_prompt_win_rates({"A": [["aaa", "a"]], "B": [["aa", "aaaa"]]}, ["x"], _by_length)
    assert rates[0, 0, 1] == 0.5 and rates[0, 1, 0] == 0.5
    rates = per_prompt_win_rates({"A": [["aaa", "aaa"], ["a", "a"]], "B": [["aa", "aa"], ["aa", "aa"]]},
                                 ["x", "y"], _by_length)
    np.testing.assert_array_equal(rates[:, 0, 1], [1.0, 0.0])
    np.testing.assert_array_equal(rates[:, 1, 0], [0.0, 1.0])
    np.testing.assert_array_equal(rates[:, 0, 0], [0.5, 0.5])


@pytest.fixture(scope="module")
def small_lm():
    from alignnb.lm import load_small_lm
    return load_small_lm(device="cpu")


def test_common_random_numbers_across_policies(small_lm):
    reference, tokenizer = small_lm
    prompts = ["Assignment statements\n\n", "Literals\n\n"]
    texts = policy_completions({"a": reference, "b": reference}, tokenizer, prompts, samples=3, max_new_tokens=5)
    assert texts["a"] == texts["b"]  # the same policy under two names draws the same completions
    assert len(set(texts["a"][0])) > 1  # yet the samples of one prompt differ from each other
    other_seed = policy_completions({"a": reference}, tokenizer, prompts, samples=3, max_new_tokens=5, seed=1)
    assert other_seed["a"] != texts["a"]


def test_residual_head_policy_starts_at_the_reference(small_lm):
    reference, tokenizer = small_lm
    policy = ResidualHeadPolicy(reference, rank=4)
    ids = tokenizer("Literals\n\nThe value", return_tensors="pt")["input_ids"]
    torch.testing.assert_close(policy(input_ids=ids).logits, reference(input_ids=ids).logits.float())
    names = {n for n, _ in policy.named_parameters()}
    assert names == {"down.weight", "up.weight", "up.bias"}  # the reference stays out
    with torch.no_grad(): policy.up.bias[5] = 3.0
    assert not torch.allclose(policy(input_ids=ids).logits, reference(input_ids=ids).logits.float())


def test_judge_reward_is_its_bradley_terry_restriction():
    from alignnb.preference import summary_task
    prompts, documents = summary_task()
    judge, x = MajorityJudge(documents), prompts[0]
    a = "Assert statements insert debugging assertions into a program"
    b = "The statement is used to check a value."
    r = judge.reward([x, x], [a, b])
    fa, fb = judge.criteria(x, a), judge.criteria(x, b)
    scales = torch.tensor(judge.scales, dtype=torch.float64)
    assert float(r[0] - r[1]) == pytest.approx(judge.sharpness * float(((fa - fb) / scales).sum()))
    for eps in (1e-2, 1e-3):  # first order: the vote between f and a point eps along f(b) - f(a)
        near = fa + eps * (fb - fa)
        assert float(judge.vote(fa, near)) == pytest.approx(float(torch.sigmoid(eps * (r[0] - r[1]))), abs=50 * eps**2)
    assert float(judge([x], [a], [b]) + judge([x], [b], [a])) == pytest.approx(1.0)
