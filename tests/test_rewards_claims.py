"""The claim logic of the rewards reproduction, driven by synthetic per-(seed, prompt) results with known answers:
matched-KL interpolation, the crossed bootstrap over seeds and prompts, paired differences, and the verdicts."""
import numpy as np
import pytest

from alignnb.rewards.experiments import (ArmRun, Evaluation, _bootstrap_claim, _crossed_weights, _matched_kl_gap,
                                         _same_gamma_gap)

PROMPTS = 21


def evaluation(kl, win, learned_win=None, both=0.0):
    "An Evaluation whose per-prompt values are the given arrays (or constants)."
    column = lambda v: list(np.broadcast_to(np.asarray(v, dtype=float), (PROMPTS,)))
    learned_win = win if learned_win is None else learned_win
    return Evaluation(column(kl), column(win), column(learned_win), column(0.0), column(both), column(1.0),
                      column(both))


def arm(how, kl_coef, seed, **values):
    return ArmRun(how, 1, kl_coef, seed, [], evaluation(**values))


def test_matched_kl_interpolates_raws_curve_exactly_without_noise():
    # raw: (0, 0.5) then (4, 0.7) and (8, 0.3); LSC at KL 6 with 0.6 (raw there: 0.5) and at KL 2 with 0.7 (raw: 0.6)
    runs = [arm("raw", 0.1, 0, kl=4.0, win=0.7), arm("raw", 0.05, 0, kl=8.0, win=0.3),
            arm("lsc", 0.1, 0, kl=2.0, win=0.7), arm("lsc", 0.05, 0, kl=6.0, win=0.6)]
    gap = _matched_kl_gap(runs, "win rate", 1, (0.1, 0.05), np.full(PROMPTS, 0.5), _crossed_weights(1, PROMPTS, 50))
    np.testing.assert_allclose(gap, 0.1, atol=1e-12)  # every resample: ((0.7 - 0.6) + (0.6 - 0.5)) / 2
    claim = _bootstrap_claim("one_property_win_rate_at_matched_kl", gap, "above", "synthetic")
    assert claim.verdict == "held" and claim.low == pytest.approx(0.1)


def test_lsc_beyond_raws_largest_kl_meets_raws_last_value():
    runs = [arm("raw", 0.1, 0, kl=4.0, win=0.3), arm("lsc", 0.1, 0, kl=9.0, win=0.35)]
    gap = _matched_kl_gap(runs, "win rate", 1, (0.1,), np.full(PROMPTS, 0.5), _crossed_weights(1, PROMPTS, 10))
    np.testing.assert_allclose(gap, 0.05, atol=1e-12)


def noisy_runs(delta, seeds, seed_spread=0.0, prompt_noise=0.1, paired=False):
    "Raw flat at 1/2 (KL 10), LSC at KL 5 with 1/2 + delta; seed offsets shared by both arms when `paired`."
    rng = np.random.default_rng(0)
    runs = []
    for s in range(seeds):
        offset = seed_spread * rng.standard_normal()
        for how, kl, win in (("raw", 10.0, 0.5), ("lsc", 5.0, 0.5 + delta)):
            own = offset if paired or how == "lsc" else 0.0
            runs.append(arm(how, 0.1, s, kl=kl, win=win + own + prompt_noise * rng.standard_normal(PROMPTS)))
    return runs


@pytest.mark.parametrize("delta, verdict", [(0.1, "held"), (0.0, "not resolved"), (-0.1, "not held")])
def test_verdict_follows_the_interval(delta, verdict):
    runs = noisy_runs(delta, seeds=8)
    gap = _matched_kl_gap(runs, "win rate", 1, (0.1,), np.full(PROMPTS, 0.5), _crossed_weights(8, PROMPTS, 2000))
    claim = _bootstrap_claim("one_property_win_rate_at_matched_kl", gap, "above", "synthetic")
    assert claim.estimate == pytest.approx(delta, abs=0.03)
    assert claim.verdict == verdict


def test_seed_to_seed_variation_widens_the_interval():
    # LSC's seeds scatter by 0.2 around +0.05: resampling prompts alone would call it; the crossed bootstrap must not
    runs = noisy_runs(0.05, seeds=4, seed_spread=0.2, prompt_noise=0.01)
    reference = np.full(PROMPTS, 0.5)
    crossed = _matched_kl_gap(runs, "win rate", 1, (0.1,), reference, _crossed_weights(4, PROMPTS, 2000))
    seed_rows, prompt_rows = _crossed_weights(4, PROMPTS, 2000)
    prompts_only = _matched_kl_gap(runs, "win rate", 1, (0.1,), reference,
                                   (np.full_like(seed_rows, 0.25), prompt_rows))  # every seed weighed alike
    assert np.ptp(np.quantile(crossed[1:], [0.025, 0.975])) > 5 * np.ptp(np.quantile(prompts_only[1:], [0.025, 0.975]))
    claim = _bootstrap_claim("one_property_win_rate_at_matched_kl", crossed, "above", "synthetic")
    assert claim.verdict == "not resolved"


def test_paired_differences_cancel_what_the_arms_share():
    # the same large seed offsets in both arms (common random numbers): the same-gamma difference is exact
    runs = noisy_runs(0.05, seeds=4, seed_spread=0.3, prompt_noise=0.0, paired=True)
    gap = _same_gamma_gap(runs, "win rate", 1, (0.1,), _crossed_weights(4, PROMPTS, 500))
    np.testing.assert_allclose(gap, 0.05, atol=1e-12)


def test_hacking_gap_and_improved_metrics():
    e = evaluation(kl=1.0, win=np.linspace(0.2, 0.8, PROMPTS), learned_win=0.9)
    np.testing.assert_allclose(e.metric("hacking gap"), 0.9 - np.linspace(0.2, 0.8, PROMPTS))
    assert e.metric("improved").sum() == (np.linspace(0.2, 0.8, PROMPTS) > 0.5).sum()
    # less hacking is a claim "below": LSC's gap smaller than raw's curve at LSC's KL
    runs = [ArmRun("raw", 1, 0.1, 0, [], evaluation(kl=10.0, win=0.2, learned_win=0.9)),
            ArmRun("lsc", 1, 0.1, 0, [], evaluation(kl=5.0, win=0.5, learned_win=0.55))]
    gap = _matched_kl_gap(runs, "hacking gap", 1, (0.1,), np.zeros(PROMPTS), _crossed_weights(1, PROMPTS, 10))
    np.testing.assert_allclose(gap, 0.05 - 0.35, atol=1e-12)  # raw's gap 0.7 at KL 10, 0.35 at KL 5
    assert _bootstrap_claim("one_property_less_reward_hacking", gap, "below", "synthetic").verdict == "held"


def test_crossed_weights_are_distributions_and_row_zero_is_the_sample():
    seeds, prompts = _crossed_weights(3, 5, 100)
    assert seeds.shape == (101, 3) and prompts.shape == (101, 5)
    np.testing.assert_allclose(seeds.sum(1), 1)
    np.testing.assert_allclose(prompts.sum(1), 1)
    np.testing.assert_allclose(seeds[0], 1 / 3)
    assert len({tuple(r) for r in prompts[1:]}) > 50  # resamples differ


def test_few_seeds_get_a_t_interval_over_per_seed_estimates():
    from alignnb.rewards.experiments import _MIN_BOOTSTRAP_SEEDS, _claim
    runs = noisy_runs(0.1, seeds=2)
    def gap(w): return _matched_kl_gap(runs, "win rate", 1, (0.1,), np.full(PROMPTS, 0.5), w)
    bootstrap = _bootstrap_claim("one_property_win_rate_at_matched_kl", gap(_crossed_weights(2, PROMPTS, 2000)),
                                 "above", "two seeds")
    assert bootstrap.verdict == "held"  # resampling two seeds and 21 prompts claims too much
    claim = _claim("one_property_win_rate_at_matched_kl", gap, "above", 2, PROMPTS, 2000)
    assert claim.interval.startswith("Student's t") and claim.verdict == "not resolved"
    assert claim.estimate == pytest.approx(bootstrap.estimate)
    assert _MIN_BOOTSTRAP_SEEDS > 2
    many = noisy_runs(0.1, seeds=_MIN_BOOTSTRAP_SEEDS)
    resampled = _claim("one_property_win_rate_at_matched_kl",
                       lambda w: _matched_kl_gap(many, "win rate", 1, (0.1,), np.full(PROMPTS, 0.5), w), "above",
                       _MIN_BOOTSTRAP_SEEDS, PROMPTS, 2000)
    assert resampled.interval.startswith("crossed bootstrap") and resampled.verdict == "held"
    with pytest.raises(ValueError, match="2 seeds"):
        _claim("one_property_win_rate_at_matched_kl", gap, "above", 1, PROMPTS, 100)


def two_curves(seeds=1, raw=((4.0, 0.6), (8.0, 0.5)), lsc=((2.0, 0.7), (10.0, 0.55)), noise=0.0, bump=None):
    "Raw and LSC arms at the given (KL, win rate) points, one gamma per point, with optional per-cell noise."
    rng = np.random.default_rng(1)
    runs = []
    for s in range(seeds):
        for how, points in (("raw", raw), ("lsc", lsc)):
            for j, (kl, win) in enumerate(points):
                runs.append(arm(how, 0.1 * (j + 1), s, kl=kl, win=win + noise * rng.standard_normal(PROMPTS)))
    coefs = {how: tuple(0.1 * (j + 1) for j in range(len(points))) for how, points in (("raw", raw), ("lsc", lsc))}
    return runs, coefs


def test_grid_gap_interpolates_both_curves_by_hand():
    from alignnb.rewards.experiments import _covered_grid, _grid_gap
    runs, coefs = two_curves()
    grid = _covered_grid(runs, coefs, (4.0, 6.0, 8.0, 10.0))
    np.testing.assert_allclose(grid, [4.0, 6.0, 8.0])  # raw's farthest arm is at KL 8
    gap = _grid_gap(runs, "win rate", coefs, np.full(PROMPTS, 0.5), grid, _crossed_weights(1, PROMPTS, 20))
    # raw: 0.6, 0.55, 0.5; LSC on the line from (2, 0.7) to (10, 0.55): 0.6625, 0.625, 0.5875
    np.testing.assert_allclose(gap, np.tile([0.0625, 0.075, 0.0875], (21, 1)), atol=1e-12)
    # below its first arm a curve runs straight from the reference policy at KL 0
    low = _grid_gap(runs, "win rate", coefs, np.full(PROMPTS, 0.5), np.array([1.0]), _crossed_weights(1, PROMPTS, 3))
    np.testing.assert_allclose(low, (0.5 + 0.2 / 2) - (0.5 + 0.1 / 4), atol=1e-12)  # LSC 0.6, raw 0.525
    assert _covered_grid(runs, coefs, (9.0,)).tolist() == [8.0]  # nothing covered: the farthest common KL


@pytest.mark.parametrize("lsc, verdict", [
    (((2.0, 0.7), (10.0, 0.6)), "held"),  # above raw at 4, 6 and 8
    (((2.0, 0.7), (10.0, 0.3)), "not held"),  # above at 4, far below at 8 (0.3625 against 0.5)
    (((4.0, 0.6), (8.0, 0.5)), "not resolved"),  # the same curve as raw
])
def test_every_kl_claim_follows_the_worst_kl(lsc, verdict):
    from alignnb.rewards.experiments import _covered_grid, _every_kl_claim, _grid_gap
    runs, coefs = two_curves(seeds=8, lsc=lsc, noise=0.1)
    grid = _covered_grid(runs, coefs, (4.0, 6.0, 8.0))
    def gap(w): return _grid_gap(runs, "win rate", coefs, np.full(PROMPTS, 0.5), grid, w)
    claim = _every_kl_claim("one_property_win_rate_at_matched_kl", gap, 8, PROMPTS, 2000)
    assert claim.verdict == verdict, claim
    assert claim.estimate == pytest.approx(gap(_crossed_weights(8, PROMPTS, 1))[0].min())
    assert "Bonferroni" in claim.interval and claim.level == 0.95


def test_bonferroni_intervals_are_wider_than_single_95_percent_ones():
    from alignnb.rewards.experiments import _covered_grid, _grid_gap, _interval
    runs, coefs = two_curves(seeds=8, noise=0.1)
    grid = _covered_grid(runs, coefs, (4.0, 6.0, 8.0))
    def gap(w): return _grid_gap(runs, "win rate", coefs, np.full(PROMPTS, 0.5), grid, w)
    _, low95, high95, _ = _interval(gap, 8, PROMPTS, 4000)
    _, low, high, _ = _interval(gap, 8, PROMPTS, 4000, 1 - 0.05 / 3)
    assert (high - low > high95 - low95).all() and low.shape == (3,)


def test_two_seed_grid_intervals_use_t_with_bonferroni_level():
    from alignnb.rewards.experiments import _covered_grid, _every_kl_claim, _grid_gap
    runs, coefs = two_curves(seeds=2, lsc=((2.0, 0.9), (10.0, 0.8)), noise=0.05)
    grid = _covered_grid(runs, coefs, (4.0, 6.0, 8.0))
    def gap(w): return _grid_gap(runs, "win rate", coefs, np.full(PROMPTS, 0.5), grid, w)
    claim = _every_kl_claim("one_property_win_rate_at_matched_kl", gap, 2, PROMPTS, 500)
    assert claim.interval.startswith("Student's t") and claim.verdict == "not resolved"  # t(1) at 98.3% is ~38
