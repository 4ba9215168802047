"""The MEliTA reproduction's claims, driven with synthetic runs whose verdict is known; the t interval's coverage;
the budget-axis reading against a brute-force step function; a tiny end-to-end `reproduce`."""
import numpy as np
import pytest

from alignnb.core import Result
from alignnb.melita.experiments import (
    ExperimentConfig, MelitaStudy, _t_interval, at_assessor_budget, at_generation, curve_at, melita_claims, reproduce,
    supporting_figures)
from alignnb.melita.search import SearchConfig, SearchRun


def _run(method, final, seed, calls=(64, 96, 128), assessor=(32, 48, 64)):
    "A run whose metrics rise linearly to `final` (a dict metric -> value) over three records."
    curves = {"generator_calls": list(calls), "assessor_calls": list(assessor)}
    for metric in ("qd_score", "max_fitness", "mean_fitness", "coverage"):
        f = final.get(metric, 0.5)
        curves[metric] = [f * 0.8, f * 0.9, f]
    return SearchRun(method, SearchConfig(generator_calls=128, n_init=32, seed=seed), None, None, curves)


def _study(delta_max, delta_mean, n_seeds=8, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    runs = {"MAP-Elites": [], "MEliTA (all)": []}
    for s in range(n_seeds):
        base = {"max_fitness": 0.9 + noise * rng.standard_normal(), "mean_fitness": 0.7 + noise * rng.standard_normal()}
        runs["MAP-Elites"].append(_run("MAP-Elites", base, s))
        mel = {"max_fitness": base["max_fitness"] + delta_max + noise * rng.standard_normal(),
               "mean_fitness": base["mean_fitness"] + delta_mean + noise * rng.standard_normal()}
        runs["MEliTA (all)"].append(_run("MEliTA (all)", mel, s, calls=(64, 80, 128), assessor=(32, 800, 4000)))
    cfg = ExperimentConfig(seeds=tuple(range(n_seeds)), search=SearchConfig(generator_calls=128, n_init=32),
                           scopes=("all",))
    return MelitaStudy(cfg, runs)


def _verdicts(study):
    return {c.name: c.verdict for c in melita_claims(study)}


def test_claims_held_when_melita_is_fitter():
    v = _verdicts(_study(0.05, 0.1))
    assert v == {"max_fitness_melita_minus_map_elites": "held", "mean_fitness_melita_minus_map_elites": "held"}


def test_claims_not_held_when_melita_is_worse():
    v = _verdicts(_study(-0.05, -0.1))
    assert set(v.values()) == {"not held"}


def test_claims_not_resolved_on_two_noisy_seeds():
    v = _verdicts(_study(0.002, 0.002, n_seeds=2, noise=0.02))
    assert set(v.values()) == {"not resolved"}


def test_t_interval_covers_the_mean_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        _, low, high = _t_interval(rng.normal(0.3, 1.0, 5))
        hits += low <= 0.3 <= high
    assert 0.93 < hits / 2000 < 0.97


def test_curve_at_is_the_step_function():
    run = _run("x", {"qd_score": 10.0}, 0)
    budgets = np.arange(50, 140)
    got = curve_at(run, "qd_score", "generator_calls", budgets)
    x, y = run.curve("generator_calls"), run.curve("qd_score")
    for b, g in zip(budgets, got):
        if b < x[0] or b > x[-1]: assert np.isnan(g)
        else: assert g == y[max(i for i in range(len(x)) if x[i] <= b)]


def test_equal_assessor_budget_reads_melita_early():
    study = _study(0.05, 0.1)
    early = at_assessor_budget(study, "MEliTA (all)", "max_fitness")
    # MAP-Elites ends at 64 assessor calls; MEliTA's record at 64 is its first (0.8 of its final)
    finals = np.array([r.curve("max_fitness")[-1] for r in study.runs["MEliTA (all)"]])
    np.testing.assert_allclose(early, 0.8 * finals)
    ours = supporting_figures(study)
    assert ours["MEliTA (all) at MAP-Elites' assessor calls - MAP-Elites final: max_fitness"] < 0


def test_tiny_reproduce_end_to_end(tmp_path):
    cfg = ExperimentConfig(seeds=(0, 1), search=SearchConfig(generator_calls=160, n_init=16, batch=8),
                           scopes=("slice",), grid_points=10)
    with pytest.raises(ValueError, match="scopes"):  # the claims compare the `all` scope
        reproduce(config=cfg, out=tmp_path)
    cfg.scopes = ("all",)
    res = reproduce(config=cfg, out=tmp_path)
    assert isinstance(res, Result) and len(res.claims) == 2
    assert all((tmp_path / f).exists() for f in ("melita_curves.png", "melita_heatmaps.png", "melita_gallery.png"))
    assert Result.from_json(res.to_json()).verdict == res.verdict


def test_equal_generations_reads_melita_at_map_elites_generation_count():
    study = _study(0.05, 0.1)
    for r in study.runs["MEliTA (all)"]:  # MEliTA runs twice the generations of MAP-Elites on the same budget
        for k in r.curves: r.curves[k] = list(r.curves[k]) + [r.curves[k][-1] * 1.1] * 2
    got = at_generation(study, "MEliTA (all)", "max_fitness")
    want = np.array([r.curve("max_fitness")[2] for r in study.runs["MEliTA (all)"]])  # MAP-Elites has 3 records
    np.testing.assert_allclose(got, want)
