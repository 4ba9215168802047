"""alignnb.calibration's torchmetrics Metrics equal the functional estimators on the whole set, however the set is
split into batches (hypothesis), including merged states as a process synchronisation would combine them."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignnb.calibration import (BinnedCalibrationError, KernelCalibrationError, binned_calibration_error,
                                 kde_calibration_error)
from alignnb.calibration.metrics import binned_error_from_sums


def _data(seed: int, n: int, c: int):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 4)
    return logits, rng.integers(0, c, size=n)


def _splits(draw_cuts, n):
    return [0, *sorted(set(min(max(int(x), 1), n - 1) for x in draw_cuts)), n]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(5, 300), c=st.integers(2, 6),
       cuts=st.lists(st.integers(1, 299), max_size=5), n_bins=st.integers(1, 20),
       variant=st.sampled_from([("l1", "top", False), ("l2", "top", False), ("l2", "top", True), ("max", "top", False),
                                ("l1", "classwise", False), ("l2", "classwise", True)]))
def test_binned_metric_equals_function_on_split_batches(seed, n, c, cuts, n_bins, variant):
    norm, mode, debias = variant
    logits, labels = _data(seed, n, c)
    bounds = _splits(cuts, n)
    metric = BinnedCalibrationError(c, n_bins=n_bins, norm=norm, mode=mode, debias=debias, from_logits=True)
    for a, b in zip(bounds, bounds[1:]):
        metric.update(torch.tensor(logits[a:b]), torch.tensor(labels[a:b]))
    expected = binned_calibration_error(logits, labels, n_bins=n_bins, norm=norm, mode=mode, debias=debias,
                                        from_logits=True)
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-10)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(10, 300), cut=st.integers(1, 299),
       mode=st.sampled_from(["top", "classwise"]), norm=st.sampled_from(["l1", "l2"]))
def test_merged_states_equal_function(seed, n, cut, mode, norm):
    "Two metrics' states merged (what the all-reduce / all-gather of a sync does) give the whole set's value."
    logits, labels = _data(seed, n, 4)
    cut = min(cut, n - 1)
    for make, function in ((lambda: BinnedCalibrationError(4, norm=norm, mode=mode, from_logits=True),
                            lambda: binned_calibration_error(logits, labels, norm=norm, mode=mode, from_logits=True)),
                           (lambda: KernelCalibrationError(4, norm=norm, mode=mode, from_logits=True),
                            lambda: kde_calibration_error(logits, labels, norm=norm, mode=mode, from_logits=True))):
        first, second = make(), make()
        first.update(logits[:cut], labels[:cut])
        second.update(logits[cut:], labels[cut:])
        first.merge_state(second)
        assert float(first.compute()) == pytest.approx(function(), abs=1e-10)


def test_error_from_sums_by_hand():
    "Two bins, worked by hand: bin 0 holds confidences 0.1, 0.3 with outcomes 0, 1; bin 1 holds 0.8 with outcome 1."
    counts = torch.tensor([[2.0, 1.0]])
    conf = torch.tensor([[0.4, 0.8]])
    out = torch.tensor([[1.0, 1.0]])
    l1 = 2 / 3 * abs(0.5 - 0.2) + 1 / 3 * abs(1.0 - 0.8)
    assert float(binned_error_from_sums(counts, conf, out, "l1")) == pytest.approx(l1)
    assert float(binned_error_from_sums(counts, conf, out, "max")) == pytest.approx(0.3)
    l2 = (2 / 3 * 0.3**2 + 1 / 3 * 0.2**2) ** 0.5
    assert float(binned_error_from_sums(counts, conf, out, "l2")) == pytest.approx(l2)
    debiased = max(2 / 3 * (0.3**2 - 0.5 * 0.5 / 1), 0.0) ** 0.5  # bin 1 has one point: counted as 0
    assert float(binned_error_from_sums(counts, conf, out, "l2", debias=True)) == pytest.approx(debiased)


def test_binary_and_tensor_inputs_on_any_device():
    rng = np.random.default_rng(1)
    q, y = rng.uniform(size=200), rng.integers(0, 2, size=200)
    metric = BinnedCalibrationError(2, mode="binary")
    metric.update(torch.tensor(q[:50]), torch.tensor(y[:50]))
    metric.update(q[50:], y[50:])
    assert float(metric.compute()) == pytest.approx(binned_calibration_error(q, y), abs=1e-12)
    metric.reset()
    with pytest.raises(ValueError, match="no predictions"):
        metric.compute()


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_bins"):
        BinnedCalibrationError(3, n_bins=0)
    with pytest.raises(ValueError, match="n_classes"):
        BinnedCalibrationError(1)
    with pytest.raises(ValueError, match="mode must be one of"):
        KernelCalibrationError(3, mode="all")
    with pytest.raises(ValueError, match="norm must be one of"):
        KernelCalibrationError(3, norm="max")
    metric = BinnedCalibrationError(3)
    with pytest.raises(ValueError, match="3 classes"):
        metric.update(np.full((4, 2), 0.5), np.zeros(4, dtype=int))
    with pytest.raises(ValueError):
        metric.update(np.full((4, 3), 0.5), np.zeros(4, dtype=int))  # rows do not sum to 1
