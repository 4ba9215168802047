"""Cross-checks of alignnb.rewards against scipy, numpy and scikit-learn, fuzzing of the public boundary, and the
RL loop on a known utility."""
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import LogisticRegression

torch.set_num_threads(1)  # a shared CPU: one thread avoids synchronisation stalls

from alignnb.rewards import (BradleyTerryRewardModel, LogitBiasPolicy, PreferencePairs, combine_rewards, content_words,
                             load_reward_task, log_sigmoid_transform, preference_pairs, reference_reward, rlhf)
from alignnb.rewards.rlhf import _rloo_advantages

finite = st.floats(-60, 60, allow_nan=False, allow_infinity=False)


@given(arrays(np.float64, st.integers(1, 20), elements=finite), arrays(np.float64, 1, elements=finite))
def test_transform_matches_scipy_log_expit(r, r_ref):
    ours = log_sigmoid_transform(torch.tensor(r), torch.tensor(r_ref[0]))
    np.testing.assert_allclose(ours.numpy(), scipy.special.log_expit(r - r_ref[0]), rtol=1e-12, atol=1e-12)
    assert (ours <= 0).all()


@given(arrays(np.float64, st.integers(2, 30), elements=finite, unique=True), finite)
def test_transform_monotone_and_gradient(r, r_ref):
    r = np.sort(r)
    leaf = torch.tensor(r, requires_grad=True)
    u = log_sigmoid_transform(leaf, torch.tensor(r_ref, dtype=torch.float64))
    assert (u.detach().diff() >= 0).all()  # float64 saturates at 0 for very large margins: non-decreasing
    grad, = torch.autograd.grad(u.sum(), leaf)
    np.testing.assert_allclose(grad.numpy(), 1 - scipy.special.expit(r - r_ref), rtol=1e-10, atol=1e-14)


@settings(max_examples=50)
@given(st.integers(0, 10_000), st.integers(2, 40), st.floats(0.01, 0.99))
def test_reference_reward_matches_scipy_and_numpy(seed, k, q):
    samples = np.random.default_rng(seed).normal(1.0, 2.0, size=(3, k))
    normal = reference_reward(torch.tensor(samples), q, "normal").numpy()
    expected = [scipy.stats.norm.ppf(q, *scipy.stats.norm.fit(row)) for row in samples]  # norm.fit: maximum likelihood
    np.testing.assert_allclose(normal, expected, rtol=1e-9, atol=1e-9)
    empirical = reference_reward(torch.tensor(samples), q, "empirical").numpy()
    np.testing.assert_allclose(empirical, np.quantile(samples, q, axis=-1, method="linear"), rtol=1e-9, atol=1e-9)


def test_public_reimplementation_constant():
    assert abs(scipy.stats.norm.ppf(0.85) - 1.0364) < 1e-4
    samples = torch.tensor([[0.0, 2.0]], dtype=torch.float64)  # mean 1, MLE std 1
    assert abs(float(reference_reward(samples)) - (1 + scipy.stats.norm.ppf(0.85))) < 1e-12


@settings(max_examples=50)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 5))
def test_combine_against_numpy(seed, b, m):
    rng = np.random.default_rng(seed)
    rewards, refs, weights = rng.normal(size=(b, m)) * 3, rng.normal(size=(b, m)), rng.uniform(size=m)
    t = lambda a: torch.tensor(a)
    np.testing.assert_allclose(combine_rewards(t(rewards), t(refs), "lsc").numpy(),
                               np.log(np.prod(scipy.special.expit(rewards - refs), -1)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(combine_rewards(t(rewards), t(refs), "sum").numpy(), rewards.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(combine_rewards(t(rewards), t(refs), "weighted", t(weights)).numpy(), rewards @ weights, rtol=1e-12)
    np.testing.assert_allclose(combine_rewards(t(rewards), t(refs), "min").numpy(), (rewards - refs).min(-1), rtol=1e-12)
    np.testing.assert_allclose(combine_rewards(t(rewards), t(refs[0]), "lsc").numpy(),  # shared (m,) references
                               scipy.special.log_expit(rewards - refs[0]).sum(-1), rtol=1e-10, atol=1e-12)


def test_sum_of_lsc_is_log_probability_that_all_independent_properties_are_good():
    rng = np.random.default_rng(0)
    rewards, refs = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    p = scipy.special.expit(rewards - refs)
    draws = rng.uniform(size=(400_000, 5, 3)) < p  # independent "good" indicators
    np.testing.assert_allclose(np.exp(combine_rewards(torch.tensor(rewards), torch.tensor(refs)).numpy()),
                               draws.all(-1).mean(0), atol=4e-3)


@settings(max_examples=30)
@given(st.floats(-5, 5).filter(lambda q: not 0 < q < 1))
def test_quantile_outside_unit_interval_raises(q):
    with pytest.raises(ValueError, match="quantile"):
        reference_reward(torch.zeros(2, 3), q)


@pytest.mark.parametrize("call, name", [
    (lambda: log_sigmoid_transform(torch.zeros(4), torch.zeros(3)), "r_ref"),
    (lambda: log_sigmoid_transform(torch.tensor([0.0, math.nan]), 0.0), "r must be finite"),
    (lambda: log_sigmoid_transform(torch.zeros(2), torch.tensor([math.inf, 0.0])), "r_ref must be finite"),
    (lambda: combine_rewards(torch.zeros(2, 3), torch.zeros(2, 2)), "refs"),
    (lambda: combine_rewards(torch.zeros(2, 3), torch.zeros(3), "weighted", torch.ones(2)), "weights"),
    (lambda: combine_rewards(torch.tensor([[0.0, -math.inf]]), torch.zeros(2)), "rewards must be finite"),
    (lambda: reference_reward(torch.tensor([[0.0, math.nan]])), "sample_rewards"),
    (lambda: reference_reward(torch.zeros(3)), "sample_rewards"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_rloo_advantages_against_loop():
    returns = torch.randn(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = 4
    expected = [returns[i] - np.mean([returns[j] for j in range(i // k * k, i // k * k + k) if j != i]) for i in range(12)]
    np.testing.assert_allclose(_rloo_advantages(returns, k).numpy(), np.array(expected, dtype=float), rtol=1e-12)


@pytest.fixture(scope="module")
def small_lm():
    from alignnb.lm import load_small_lm
    return load_small_lm(device="cpu")


@pytest.fixture(scope="module")
def task():
    return load_reward_task()


def test_linear_bradley_terry_head_matches_sklearn_logistic_regression(small_lm):
    rng = np.random.default_rng(0)
    n, d = 400, 2 * small_lm[0].config.hidden_size
    w_true = rng.normal(size=d) / math.sqrt(d) * 3
    chosen_x, rejected_x = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    swap = rng.uniform(size=n) > scipy.special.expit((chosen_x - rejected_x) @ w_true)
    chosen_x[swap], rejected_x[swap] = rejected_x[swap].copy(), chosen_x[swap].copy()
    cache = {("x", f"c{i}"): torch.tensor(chosen_x[i], dtype=torch.float32) for i in range(n)}
    cache |= {("x", f"r{i}"): torch.tensor(rejected_x[i], dtype=torch.float32) for i in range(n)}
    model = BradleyTerryRewardModel(*small_lm, cache=cache)
    l2 = 1e-2
    model.fit(PreferencePairs(["x"] * n, [f"c{i}" for i in range(n)], [f"r{i}" for i in range(n)]), valid_frac=0.0, l2=l2, steps=1500)
    scale = model.feature_scale.numpy()
    diffs = (chosen_x - rejected_x) / scale  # the head sees standardised features; the shift cancels in differences
    reference = LogisticRegression(fit_intercept=False, C=1 / (2 * l2 * 2 * n), tol=1e-10, max_iter=10_000)
    reference.fit(np.concatenate([diffs, -diffs]), np.r_[np.ones(n), np.zeros(n)])  # symmetric: two classes
    ours = model.head.weight.detach().numpy().ravel()
    cosine = ours @ reference.coef_.ravel() / np.linalg.norm(ours) / np.linalg.norm(reference.coef_)
    assert cosine > 0.995
    np.testing.assert_allclose(scipy.special.expit(diffs @ ours), reference.predict_proba(diffs)[:, 1], atol=0.02)


def test_reward_model_recovers_a_known_bradley_terry_utility(small_lm, task):
    model, tokenizer = small_lm
    scores = model.get_input_embeddings().weight.detach() @ torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(7))
    def known(prompts, responses):
        ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
        return torch.stack([scores[i].mean() for i in ids]).double() * 6 / scores.std()
    reward_model = BradleyTerryRewardModel(model, tokenizer)
    report = reward_model.fit(preference_pairs(task, known, range(80), generator=torch.Generator().manual_seed(3)))
    xs = [task.prompts[i] for i in range(80, len(task.prompts)) for _ in task.reference_responses[i]]
    ys = [r for i in range(80, len(task.prompts)) for r in task.reference_responses[i]]
    assert scipy.stats.spearmanr(reward_model.score(xs, ys).numpy(), known(xs, ys).numpy()).statistic > 0.9
    assert report.valid_accuracy > 0.7


def test_preference_labels_follow_the_bradley_terry_temperature(task):
    truth = task.helpfulness
    sharp = preference_pairs(task, truth, temperature=1e-3, generator=torch.Generator().manual_seed(0))
    assert (truth(sharp.prompts, sharp.chosen) >= truth(sharp.prompts, sharp.rejected)).all()
    flat = preference_pairs(task, truth, temperature=1e3, generator=torch.Generator().manual_seed(0))
    differs = truth(flat.prompts, flat.chosen) != truth(flat.prompts, flat.rejected)
    agree = (truth(flat.prompts, flat.chosen) > truth(flat.prompts, flat.rejected))[differs].double().mean()
    assert 0.4 < float(agree) < 0.6
    k = len(task.reference_responses[0])
    assert k >= 32 and len(sharp) == len(task.prompts) * k * (k - 1) // 2  # all pairs of K samples
    untied = preference_pairs(task, task.harmlessness, drop_ties=True, generator=torch.Generator().manual_seed(0))
    assert 0 < len(untied) < len(sharp)
    assert (task.harmlessness(untied.prompts, untied.chosen) != task.harmlessness(untied.prompts, untied.rejected)).all()


def test_rlhf_raises_a_known_utility_and_kl_coefficient_orders_kl(small_lm, task):
    model, tokenizer = small_lm
    utility = lambda xs, ys: torch.tensor([len(content_words(y)) for y in ys], dtype=torch.float64)
    logs = {c: rlhf(LogitBiasPolicy(model), model, tokenizer, task.prompts[:80], utility, kl_coef=c, steps=10, lr=5.0, seed=1)[1]
            for c in (0.02, 2.0)}
    start = logs[0.02][0]["utility"]
    assert np.mean([row["utility"] for row in logs[0.02][-3:]]) > start + 0.5
    kl = {c: np.mean([row["kl"] for row in log[-4:]]) for c, log in logs.items()}
    assert kl[2.0] < kl[0.02] and kl[2.0] < 3.0


def test_rlhf_full_fine_tuning_with_adam(small_lm, task):
    import copy
    model, tokenizer = small_lm
    policy, log = rlhf(copy.deepcopy(model).requires_grad_(True), model, tokenizer, task.prompts[:8], lambda xs, ys: torch.zeros(len(ys)) + torch.tensor(
        [float(len(y)) for y in ys]), kl_coef=0.1, steps=1, prompts_per_step=2, samples_per_prompt=2, optimizer="adam", lr=1e-4,
        max_new_tokens=4)
    assert any((p - q).abs().max() > 0 for p, q in zip(policy.parameters(), model.parameters()))
    assert set(log[0]) >= {"utility", "kl", "return"}


def test_reference_samples_come_from_the_committed_small_lm(task):
    from alignnb.rewards import small_lm_fingerprint
    assert task.lm_fingerprint == small_lm_fingerprint(), "the small LM was retrained: run alignnb.rewards.write_reward_samples()"


def test_win_rate_of_the_reference_policy_against_itself_is_one_half(task):
    from alignnb.rewards.experiments import _win_rate
    xs = [p for p, rs in zip(task.prompts, task.reference_responses) for _ in rs]
    ys = [r for rs in task.reference_responses for r in rs]
    assert abs(float(_win_rate(task, xs, ys).mean()) - 0.5) < 1e-12  # every pair counted both ways, ties half
    best = [max(rs, key=lambda r: float(task.helpfulness([p], [r]))) for p, rs in zip(task.prompts, task.reference_responses)]
    assert float(_win_rate(task, task.prompts, best).mean()) > 0.75
