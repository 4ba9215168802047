"""The public boundary of alignnb.rewards: every call on odd input (NaN, inf, huge, tiny, empty, wrong dtype, shape or
type) returns a finite, correctly shaped result or raises a ValueError / TypeError that names the argument; `rlhf`
rejects bad arguments before it samples; each page's "Using it" recipe runs alone in a fresh interpreter."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

torch.set_num_threads(1)  # a shared CPU: one thread avoids synchronisation stalls

from alignnb.rewards import LogitBiasPolicy, combine_rewards, log_sigmoid_transform, reference_reward, rlhf

ROOT = Path(__file__).resolve().parents[1]
odd_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 3e38, 5e-324]))
float_arrays = st.builds(torch.as_tensor, arrays(st.sampled_from([np.float64, np.float32]),
                                                 array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                                                 elements=odd_floats.filter(lambda v: abs(v) <= 3e38 or math.isinf(v)
                                                                            or math.isnan(v))))
other_inputs = st.one_of(st.just("abc"), st.none(), st.just([1.0, "x"]), st.just(torch.tensor([True, False])),
                         st.just(torch.tensor([1 + 2j])), st.just(torch.arange(6).view(2, 3)),
                         st.lists(st.floats(-10, 10), max_size=4))
inputs = st.one_of(float_arrays, other_inputs)


def check(call, names: tuple, shape=None):
    "The call returns a finite tensor (of `shape` when given) or raises a named ValueError or TypeError."
    try: out = call()
    except (ValueError, TypeError) as e:
        assert any(n in str(e) for n in names), f"error does not name {names}: {e}"
        return None
    assert isinstance(out, torch.Tensor) and torch.isfinite(out).all(), out
    if shape is not None: assert tuple(out.shape) == tuple(shape), (out.shape, shape)
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs, st.one_of(inputs, odd_floats))
def test_log_sigmoid_transform_on_odd_input(r, r_ref):
    out = check(lambda: log_sigmoid_transform(r, r_ref), ("r", "r_ref"))
    if out is not None: assert (out <= 0).all() and out.shape == torch.as_tensor(r).shape


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs, st.one_of(odd_floats, st.just("high"), st.just(True)), st.sampled_from(["normal", "empirical", "x", 3]))
def test_reference_reward_on_odd_input(samples, quantile, method):
    shape = None
    if isinstance(samples, torch.Tensor) and samples.dim() == 2: shape = samples.shape[:1]
    out = check(lambda: reference_reward(samples, quantile, method), ("sample_rewards", "quantile", "method"), shape)
    if out is not None:  # a quantile of the samples lies within their range
        s = torch.as_tensor(samples).double()
        assert (out.double() >= s.min(-1).values - 1e-6 * s.abs().max(-1).values - 1e-12).all() or method == "normal"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs, inputs, st.sampled_from(["lsc", "sum", "weighted", "min", "product", None]), st.one_of(st.none(), inputs))
def test_combine_rewards_on_odd_input(rewards, refs, how, weights):
    shape = None
    if isinstance(rewards, torch.Tensor) and rewards.dim() == 2: shape = rewards.shape[:1]
    check(lambda: combine_rewards(rewards, refs, how, weights), ("rewards", "refs", "how", "weights"), shape)


def test_overflow_of_finite_input_is_named_not_infinite():
    with pytest.raises(ValueError, match="r - r_ref overflows"):
        log_sigmoid_transform(torch.tensor([-1e308], dtype=torch.float64), torch.tensor(1e308, dtype=torch.float64))
    with pytest.raises(ValueError, match="overflows"):
        combine_rewards(torch.tensor([[3e38, 3e38]], dtype=torch.float32), torch.zeros(2), "sum")
    # huge but representable: the reference reward is computed on a power-of-2 scale, exactly as numpy on rescaled data
    x = torch.tensor([[1e308, -1e308, 5e307, 1e308]], dtype=torch.float64)
    expected = (np.mean(x.numpy() / 1e300) + 1.0364333894937898 * np.std(x.numpy() / 1e300)) * 1e300
    np.testing.assert_allclose(reference_reward(x).numpy(), [expected], rtol=1e-12)
    np.testing.assert_allclose(reference_reward(x, method="empirical").numpy(),
                               np.quantile(x.numpy(), 0.85, axis=-1), rtol=1e-12)


def test_empty_batches_give_empty_results():
    assert log_sigmoid_transform(torch.zeros(0), 0.0).shape == (0,)
    assert reference_reward(torch.zeros(0, 4)).shape == (0,)
    assert combine_rewards(torch.zeros(0, 2), torch.zeros(2)).shape == (0,)
    with pytest.raises(ValueError, match="m >= 1"):
        combine_rewards(torch.zeros(3, 0), torch.zeros(0), "min")


@pytest.fixture(scope="module")
def lm_and_prompts():
    from alignnb.lm import load_small_lm
    from alignnb.rewards import load_reward_task
    model, tokenizer = load_small_lm(device="cpu")
    return model, tokenizer, load_reward_task().prompts[:8]


def count_words(prompts, responses): return torch.tensor([len(r.split()) for r in responses], dtype=torch.float64)


@pytest.mark.parametrize("kwargs, named, error", [
    ({"prompts": "abc"}, "prompts", TypeError), ({"prompts": []}, "prompts", ValueError),
    ({"prompts": ["a", 3]}, "prompts", TypeError), ({"kl_coef": math.nan}, "kl_coef", ValueError),
    ({"kl_coef": math.inf}, "kl_coef", ValueError), ({"kl_coef": -0.1}, "kl_coef", ValueError),
    ({"kl_coef": "0.1"}, "kl_coef", TypeError), ({"lr": math.nan}, "lr", ValueError), ({"lr": 0}, "lr", ValueError),
    ({"steps": 0}, "steps", ValueError), ({"steps": 1.5}, "steps", TypeError),
    ({"samples_per_prompt": 1}, "samples_per_prompt", ValueError),
    ({"prompts_per_step": 9}, "prompts_per_step", ValueError), ({"max_new_tokens": 0}, "max_new_tokens", ValueError),
    ({"max_grad_norm": math.nan}, "max_grad_norm", ValueError), ({"utility": None}, "utility", TypeError),
    ({"optimizer": "rmsprop"}, "optimizer", ValueError),
])
def test_rlhf_rejects_bad_arguments_before_sampling(lm_and_prompts, kwargs, named, error):
    model, tokenizer, prompts = lm_and_prompts
    call = {"prompts": prompts, "utility": count_words} | kwargs
    with pytest.raises(error, match=named):
        rlhf(LogitBiasPolicy(model), model, tokenizer, call.pop("prompts"), call.pop("utility"), steps=call.pop("steps", 1),
             **call)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rlhf_utility_returning_non_finite_raises_before_any_update(lm_and_prompts, bad):
    model, tokenizer, prompts = lm_and_prompts
    policy = LogitBiasPolicy(model)
    def utility(xs, ys): return torch.where(torch.arange(len(ys)) == 1, bad, 0.0)
    with pytest.raises(ValueError, match="utility must return finite values"):
        rlhf(policy, model, tokenizer, prompts, utility, steps=3, prompts_per_step=2, samples_per_prompt=2,
             max_new_tokens=4)
    assert policy.bias.abs().max().item() == 0.0


def recipe_cells(notebook: Path) -> list[str]:
    "The code cells after the page's '## Using it' heading, without `#| slow` ones."
    cells = json.loads(notebook.read_text())["cells"]
    start = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip()
                 .startswith("## Using it"))
    code = ["".join(c["source"]) for c in cells[start:] if c["cell_type"] == "code"]
    return [c for c in code if not c.lstrip().startswith("#| slow")]


@pytest.mark.parametrize("page", ["00_transform", "02_rlhf", "09_experiments"])
def test_using_it_recipe_runs_alone_in_a_fresh_interpreter(page):
    cells = recipe_cells(ROOT / "nbs" / "10_rewards" / f"{page}.ipynb")
    assert cells and cells[0].lstrip().startswith(("import", "from")), "the recipe starts with its own imports"
    script = "import torch\ntorch.set_num_threads(1)\ndel torch\n" + "\n".join(cells)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


def test_preference_pairs_checks_the_utility_it_is_given():
    """A utility of the wrong shape or with NaN is named (it returned 56 prompts and 3 responses before)."""
    from alignnb.rewards import load_reward_task, preference_pairs
    task = load_reward_task()
    good = lambda xs, ys: torch.tensor([float(len(y)) for y in ys])
    pairs = preference_pairs(task, good, prompt_index=[0, 1], generator=torch.Generator().manual_seed(0))
    assert len(pairs.prompts) == len(pairs.chosen) == len(pairs.rejected) > 0
    with pytest.raises(ValueError, match="utility must return one score per pair"):
        preference_pairs(task, lambda xs, ys: torch.zeros(3), prompt_index=[0, 1])
    with pytest.raises(ValueError, match="utility returned NaN"):
        preference_pairs(task, lambda xs, ys: torch.full((len(ys),), float("nan")), prompt_index=[0, 1])
    with pytest.raises(ValueError, match="temperature"):
        preference_pairs(task, good, prompt_index=[0], temperature=float("nan"))


def test_python_float_beyond_float32_is_named():
    "A finite Python float that overflows the default float32 is reported as out of range, not as non-finite."
    with pytest.raises(ValueError, match="r_ref holds finite values beyond the range of torch.float32"):
        log_sigmoid_transform(torch.zeros(2), 1e300)
    with pytest.raises(ValueError, match="r must be finite"):
        log_sigmoid_transform(torch.tensor([math.inf]), 0.0)
    out = log_sigmoid_transform(torch.zeros(2, dtype=torch.float64), torch.tensor(1e300, dtype=torch.float64))
    assert torch.equal(out, torch.full((2,), -1e300, dtype=torch.float64))


def test_reference_reward_overflow_names_its_argument():
    "A normal quantile far in the tail of rewards near float32's limit overflows: the error names sample_rewards (found by the fuzz test)."
    with pytest.raises(ValueError, match="sample_rewards"):
        reference_reward(torch.tensor([[0.0, 0.0], [0.0, 1.5847e38]]), 5.960464477539063e-08, "normal")
