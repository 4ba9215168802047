"""The verdict logic of `Claim` and `Result`, driven with synthetic estimates and intervals."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from alignnb.core import Claim, Result, bootstrap_interval, normal_interval

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def claim(low, high, threshold=0.0, direction="above"):
    return Claim("c", "statement", "paper figure", (low + high) / 2, low, high, threshold, direction)


@settings(max_examples=300, deadline=None)
@given(finite, finite, finite, st.sampled_from(["above", "below"]))
def test_verdict_is_decided_by_the_side_of_the_interval(a, b, t, direction):
    low, high = min(a, b), max(a, b)
    v = claim(low, high, t, direction).verdict
    if low < t < high or t in (low, high):
        assert v == "not resolved"  # an interval that contains the threshold decides nothing
    elif (low > t) == (direction == "above"):
        assert v == "held"
    else:
        assert v == "not held"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["held", "not held", "not resolved"]), min_size=1, max_size=6))
def test_result_verdict_follows_its_claims(verdicts):
    intervals = {"held": (1.0, 2.0), "not held": (-2.0, -1.0), "not resolved": (-1.0, 1.0)}
    claims = [claim(*intervals[v]) for v in verdicts]
    expected = "not held" if "not held" in verdicts else "not resolved" if "not resolved" in verdicts else "held"
    result = Result("m", "c", "p", claims=claims)
    assert result.verdict == expected
    # the verdict in JSON is derived, and a tampered one is not read back
    d = json.loads(result.to_json())
    d["verdict"] = "held"
    for c in d["claims"]: c["verdict"] = "held"
    assert Result.from_dict(d).verdict == expected


def test_bootstrap_interval_covers_the_true_mean_at_about_its_level():
    rng = np.random.default_rng(0)
    covered = 0
    for rep in range(200):
        x = rng.exponential(size=60)  # skewed, true mean 1
        _, low, high = bootstrap_interval(x, level=0.9, n_resamples=500, seed=rep)
        covered += low <= 1.0 <= high
    assert 0.82 <= covered / 200 <= 0.96  # nominal 0.9; the percentile bootstrap undercovers a little at n = 60


def test_normal_interval_matches_the_gaussian_quantile():
    from scipy.stats import norm
    low, high = normal_interval(2.0, 0.5, level=0.9)
    assert high - 2.0 == pytest.approx(norm.ppf(0.95) * 0.5, rel=1e-9)
    assert 2.0 - low == pytest.approx(norm.ppf(0.95) * 0.5, rel=1e-9)


def test_paired_differences_resolve_what_unpaired_arms_cannot():
    rng = np.random.default_rng(1)
    prompt_effect = rng.normal(0, 1.0, size=30)  # large shared noise between arms
    a = prompt_effect + 0.2 + rng.normal(0, 0.1, 30)
    b = prompt_effect + rng.normal(0, 0.1, 30)
    paired = Claim.from_samples("gap", "A beats B", "p", a - b, threshold=0.0, unit="prompts")
    assert paired.verdict == "held" and paired.interval == "bootstrap over 30 prompts"
    ma, la, ha = bootstrap_interval(a)
    mb, lb, hb = bootstrap_interval(b)
    assert la < hb  # the arms' own intervals overlap: unpaired, the gap would not be resolved


@pytest.mark.parametrize("bad, message", [
    (dict(low=1.0, high=0.0), "low <= high"),
    (dict(direction="up"), "direction must be"),
    (dict(low=float("nan")), "need finite"),
    (dict(level=1.5), "level must lie"),
    (dict(name=3), "Claim.name must be a str"),
])
def test_bad_claims_are_rejected_by_name(bad, message):
    kw = dict(name="c", statement="s", paper="p", estimate=0.0, low=0.0, high=0.0, threshold=0.0) | bad
    with pytest.raises((ValueError, TypeError), match=message):
        Claim(**kw)
