"""Two CPU processes (accelerate launch, gloo) train a tiny GPT-2 with alignnb's TRL Nash-MD-PG trainer: the parameters
stay identical across ranks and equal those of one process on the concatenated batches; the calibration metrics
synchronise to the functional forms on the whole set."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
from tiny_lm import save_tiny_gpt2  # noqa: E402

SINGLE_PROCESS_ATOL = 1e-5  # float32 sums in another order over 3 SGD steps; the steps move parameters by ~1e-1


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("distributed")
    model = save_tiny_gpt2(workdir / "model")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGNNB_QUIET": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # --multi_gpu selects accelerate's torchrun launcher (its --cpu path with several processes needs mpirun); with
    # use_cpu=True in the training arguments the processes run on the CPU and join with gloo, which the script asserts
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(SCRIPTS / "trl_distributed.py"), "record", "--model", str(model), "--workdir", str(workdir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir, model


def test_parameters_identical_across_ranks_and_equal_to_one_process(two_process_run):
    workdir, model = two_process_run
    import trl_distributed
    trl_distributed.replay(str(model), workdir)  # one process, per-device batch 4 = the two ranks' 2 + 2
    rank0, rank1, single = (torch.load(workdir / f"params_{n}.pt") for n in ("rank0", "rank1", "single"))
    start = load_file(model / "model.safetensors")
    assert rank0.keys() == rank1.keys() == single.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # DDP: the same averaged gradient on every rank
        torch.testing.assert_close(rank0[name], single[name], rtol=0, atol=SINGLE_PROCESS_ATOL)
    moved = max(float((rank0[k] - start[k]).abs().max()) for k in start if k in rank0)
    assert moved > 100 * SINGLE_PROCESS_ATOL  # training did move the parameters: the agreement is not trivial


def test_metrics_synchronise_to_the_functional_forms(two_process_run):
    from alignnb.calibration import binned_calibration_error, kde_calibration_error
    workdir, _ = two_process_run
    rng = np.random.default_rng(0)  # the data of trl_distributed.record, split 501 / 500 between the ranks
    logits = rng.normal(size=(1001, 5)) * 3
    labels = rng.integers(0, 5, size=1001)
    expected = {"binned": binned_calibration_error(logits, labels, from_logits=True),
                "binned_l2_classwise": binned_calibration_error(logits, labels, norm="l2", mode="classwise",
                                                                debias=True, from_logits=True),
                "kernel": kde_calibration_error(logits, labels, from_logits=True)}
    for rank in (0, 1):
        values = torch.load(workdir / f"metrics_rank{rank}.pt")
        for name, value in expected.items():
            assert values[name] == pytest.approx(value, abs=1e-10), (rank, name)
        half = binned_calibration_error(logits[rank::2], labels[rank::2], from_logits=True)
        assert abs(half - values["binned"]) > 1e-4  # a metric that did not synchronise would give this
