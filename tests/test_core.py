"""`Result`: JSON round trip and notebook rendering, on values a notebook would produce."""
import json
import math

import numpy as np
import pytest
import torch

from alignnb.core import Claim, Result, seed_everything


def make_result(**kw):
    base = dict(method="toy", claim="Sorting is idempotent.", paper="sort(sort(x)) == sort(x)",
                ours={"n": np.int64(5), "mean": np.float32(0.25), "vector": torch.tensor([1.0, 2.0]),
                      "label": "ok", "flag": np.bool_(True)},
                claims=[Claim("idempotent", "sort(sort(x)) == sort(x) on every input tried", "always",
                              np.float64(1.0), 1.0, 1.0, np.float32(0.5), level=1.0, interval="exact")],
                seconds=1.25, figures=["a.png"])
    base.update(kw)
    return Result(**base)


def test_json_round_trip_gives_plain_python_values():
    r = make_result()
    text = r.to_json()
    data = json.loads(text)  # valid JSON, readable by anything
    assert data["ours"] == {"n": 5, "mean": 0.25, "vector": [1.0, 2.0], "label": "ok", "flag": True}
    assert data["verdict"] == "held" and type(data["ours"]["n"]) is int
    assert data["claims"][0]["verdict"] == "held" and type(data["claims"][0]["threshold"]) is float
    back = Result.from_json(text)
    assert back.to_dict() == data
    assert back.method == "toy" and back.figures == ["a.png"] and back.seconds == 1.25


def test_non_finite_numbers_survive_as_text():
    r = make_result(ours={"x": float("inf"), "y": np.float64("nan")})
    data = json.loads(r.to_json())  # strict JSON has no inf/nan
    assert data["ours"] == {"x": "inf", "y": "nan"}
    json.loads(r.to_json(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_from_dict_rejects_unknown_fields():
    d = make_result().to_dict()
    d["extra"] = 1
    with pytest.raises(ValueError, match="unknown Result fields"):
        Result.from_dict(d)


def test_markdown_rendering_is_a_table_with_every_figure():
    miss = Claim("idempotent", "s", "always", 0.0, 0.0, 0.0, 0.5, level=1.0, interval="exact")
    r = make_result(claims=[miss], claim="a | b")
    md = r._repr_markdown_()
    lines = md.splitlines()
    assert lines[1] == "|---|---|"
    assert all(l.startswith("| ") and l.endswith(" |") for l in lines[2:])
    body = "\n".join(lines[2:])
    assert "a \\| b" in body  # pipes in text do not break the table
    assert "| ours: mean | 0.25 |" in body and "| ours: n | 5 |" in body
    assert "**not held**" in body and "`a.png`" in body and "| seconds | 1.2 |" in body


def test_field_types_are_checked():
    with pytest.raises(TypeError, match="Result.ours must be a dict"):
        make_result(ours=[1, 2])


def test_seed_everything_generators_are_independent_of_global_draws():
    g = seed_everything(3)
    torch.rand(10)  # a global draw must not move the returned generator
    a = torch.rand(4, generator=g)
    b = torch.rand(4, generator=seed_everything(3))
    assert torch.equal(a, b)
    assert not math.isclose(float(a[0]), float(torch.rand(1, generator=seed_everything(4))[0]))


def test_t_and_exact_intervals_match_scipy():
    "The Student-t and Clopper-Pearson intervals of core against scipy's own constructions."
    from scipy import stats
    from alignnb.core import exact_binomial_interval, t_interval
    rng = np.random.default_rng(3)
    for n in (2, 3, 8, 40):
        v = rng.normal(1.0, 2.0, n)
        mean, low, high = t_interval(v, 0.9)
        assert np.allclose((low, high), stats.t.interval(0.9, n - 1, loc=v.mean(), scale=stats.sem(v)), atol=1e-12)
    for k, n in ((0, 7), (3, 7), (7, 7), (55, 200)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        assert np.allclose(exact_binomial_interval(k, n, 0.9)[1:], (ci.low, ci.high), atol=1e-12)
    claim = Claim.from_t("c", "s", "p", [0.2, 0.3, 0.25, 0.28], threshold=0.0)
    assert claim.verdict == "held" and claim.interval == "t interval over 4 seeds"
    with pytest.raises(ValueError, match="n >= 2"):
        t_interval([1.0])
