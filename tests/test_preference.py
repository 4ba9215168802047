"""Cross-checks of alignnb.preference against TRL's DPOTrainer losses, SciPy's root finder, and fuzzing."""
import math, tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from alignnb.preference import (dpo_loss, exploitability, geometric_mixture, ipo_loss, nash_md_pg_loss, slic_loss,
                                soft_label, solve_regularised_nash, cyclic_preference_matrix, bradley_terry_matrix,
                                offline_ipo_optimum, tabular_loss, nash_md_step)

# ---------------------------------------------------------------- TRL: identical model, identical batch

@pytest.fixture(scope="module")
def trl_setup():
    "A tiny GPT-2 policy and reference, a word-level tokenizer and a DPO batch collated by TRL itself."
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer
    words = ["<pad>", "<eos>"] + "a b c d e f g h i j k l m n o p q r s t".split()
    bpe = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(words), n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    policy, reference = GPT2LMHeadModel(config), GPT2LMHeadModel(config)
    data = Dataset.from_dict({"prompt": ["a b", "c d e", "f", "g h i j"],
                              "chosen": [" k l m", " n", " o p q r s", " t a"],
                              "rejected": [" b", " c d e f", " g h", " i j k l m n"]})
    out = tempfile.mkdtemp()
    def trainer(loss_type, beta):
        args = DPOConfig(output_dir=out, beta=beta, loss_type=[loss_type], report_to=[], use_cpu=True,
                         per_device_train_batch_size=4, bf16=False, fp16=False)  # no autocast: compare in float32
        return DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data, processing_class=tokenizer)
    first = trainer("sigmoid", 0.1)
    batch = next(iter(first.get_train_dataloader()))
    return trainer, policy, reference, batch


def _our_token_logps(model, batch):
    "Per-token completion log-probabilities computed here, independently of TRL: (B, T-1) and the mask."
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    token = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return token, batch["completion_mask"][:, 1:].double()


@pytest.mark.parametrize("loss_type, ours, normalize, beta", [
    ("ipo", ipo_loss, "mean", 0.3),  # TRL's DPOTrainer averages the IPO log-ratios per completion token
    ("sigmoid", dpo_loss, "sum", 0.1),  # DPO: sequence sums
    ("hinge", slic_loss, "sum", 0.5),  # SLiC: sequence sums
])
def test_matches_trl_dpo_trainer(trl_setup, loss_type, ours, normalize, beta):
    make_trainer, policy, reference, batch = trl_setup
    trainer = make_trainer(loss_type, beta)
    with torch.no_grad(): expected = trainer._compute_loss(trainer.model, batch, return_outputs=False)
    logp, mask = _our_token_logps(policy, batch)
    ref_logp, _ = _our_token_logps(reference, batch)
    n = logp.shape[0] // 2  # TRL stacks [chosen; rejected]
    got = ours(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], tau=beta, mask_w=mask[:n], mask_l=mask[n:], normalize=normalize)
    assert abs(float(got) - float(expected)) < 1e-5 * max(1.0, abs(float(expected)))


def test_trl_ipo_differs_from_paper_sum(trl_setup):
    "The per-token averaging matters: the paper's sequence-sum IPO is a different number on the same batch."
    make_trainer, policy, reference, batch = trl_setup
    trainer = make_trainer("ipo", 0.3)
    with torch.no_grad(): expected = float(trainer._compute_loss(trainer.model, batch, return_outputs=False))
    logp, mask = _our_token_logps(policy, batch)
    ref_logp, _ = _our_token_logps(reference, batch)
    n = logp.shape[0] // 2
    summed = float(ipo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], 0.3, mask[:n], mask[n:], normalize="sum"))
    assert abs(summed - expected) > 1e-3

# ---------------------------------------------------------------- the Nash solver against SciPy

@pytest.mark.parametrize("seed, tau", [(0, 0.05), (1, 0.2), (2, 1.0)])
def test_nash_matches_scipy_root(seed, tau):
    "Solve the fixed point (7) in logit space with SciPy's hybrid Powell method and compare."
    from scipy.optimize import root
    rng = np.random.default_rng(seed)
    K = 6
    P = cyclic_preference_matrix(torch.tensor(rng.normal(size=K)), strength=float(rng.uniform(0.5, 3)))
    pi_ref = torch.tensor(rng.dirichlet(np.ones(K)))
    Pn, log_ref = P.numpy(), np.log(pi_ref.numpy())
    def residual(z):
        pi = np.exp(z - z.max()); pi /= pi.sum()
        r = z - log_ref - Pn @ pi / tau
        return r - r.mean()  # logits are defined up to a constant
    sol = root(residual, log_ref, method="hybr", tol=1e-14)
    pi_scipy = np.exp(sol.x - sol.x.max()); pi_scipy /= pi_scipy.sum()
    ours = solve_regularised_nash(P, pi_ref, tau).numpy()
    assert np.abs(ours - pi_scipy).max() < 1e-9
    assert float(exploitability(torch.tensor(pi_scipy), P, pi_ref, tau)) < 1e-12

# ---------------------------------------------------------------- properties (hypothesis)

floats = st.floats(-20, 20, allow_nan=False)

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(floats, floats, floats, floats), min_size=1, max_size=8), st.floats(0.01, 10))
def test_soft_label_reduces_to_hard_labels(rows, tau):
    lw, ll, rw, rl = (torch.tensor(c, dtype=torch.float64) for c in zip(*rows))
    n = len(rows)
    for fn in (ipo_loss, dpo_loss, slic_loss):
        torch.testing.assert_close(soft_label(fn, torch.ones(n, dtype=torch.float64), lw, ll, rw, rl, tau), fn(lw, ll, rw, rl, tau))
        torch.testing.assert_close(soft_label(fn, torch.zeros(n, dtype=torch.float64), lw, ll, rw, rl, tau), fn(ll, lw, rl, rw, tau))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(floats, floats, floats, floats), min_size=1, max_size=8), st.floats(0.01, 10))
def test_losses_match_direct_formulas(rows, tau):
    lw, ll, rw, rl = (torch.tensor(c, dtype=torch.float64) for c in zip(*rows))
    for (a, b, c, d), ipo, dpo, slic in zip(rows, ipo_loss(lw, ll, rw, rl, tau, reduction="none"),
                                            dpo_loss(lw, ll, rw, rl, tau, reduction="none"),
                                            slic_loss(lw, ll, rw, rl, tau, reduction="none")):
        h = (a - c) - (b - d)
        assert math.isclose(float(ipo), (h - 1 / (2 * tau)) ** 2, rel_tol=1e-9, abs_tol=1e-9)
        z = -tau * h  # -log sigmoid(tau h) = log(1 + exp(-tau h)), computed stably
        assert math.isclose(float(dpo), max(z, 0) + math.log1p(math.exp(-abs(z))), rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(float(slic), max(0.0, 1 - tau * h), rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 7), st.integers(0, 10_000), st.floats(0.05, 2.0))
def test_exploitability_nonnegative_and_zero_only_at_nash(K, seed, tau):
    rng = np.random.default_rng(seed)
    P = cyclic_preference_matrix(torch.tensor(rng.normal(size=K)), float(rng.uniform(0, 3)))
    pi_ref, pi = (torch.tensor(rng.dirichlet(np.ones(K))) for _ in range(2))
    assert float(exploitability(pi, P, pi_ref, tau)) >= -1e-12
    nash = solve_regularised_nash(P, pi_ref, tau)
    assert abs(float(exploitability(nash, P, pi_ref, tau))) < 1e-10


def test_offline_ipo_gradient_vanishes_at_closed_form():
    "The gradient of the exact offline IPO loss is zero at (3) and not at the Nash equilibrium."
    rng = np.random.default_rng(5)
    P = cyclic_preference_matrix(torch.tensor(rng.normal(size=5)), 1.5)
    pi_ref, mu = (torch.tensor(rng.dirichlet(np.ones(5))) for _ in range(2))
    for target, zero in ((offline_ipo_optimum(P, pi_ref, mu, 0.2), True), (solve_regularised_nash(P, pi_ref, 0.2), False)):
        theta = target.log().clone().requires_grad_(True)
        grad, = torch.autograd.grad(tabular_loss(theta, P, pi_ref, 0.2, "offline_ipo", mu=mu), theta)
        assert (grad.abs().max() < 1e-10) == zero

# ---------------------------------------------------------------- bad input

def _pair(n=3):
    return [torch.zeros(n, dtype=torch.float64) for _ in range(4)]

@settings(max_examples=30, deadline=None)
@given(st.one_of(st.floats(max_value=0.0, allow_nan=False), st.just(float("nan")), st.just(float("inf"))))
def test_bad_tau(tau):
    for fn in (ipo_loss, dpo_loss, slic_loss):
        with pytest.raises(ValueError, match="tau"): fn(*_pair(), tau=tau)
    with pytest.raises(ValueError, match="tau"): nash_md_pg_loss(torch.zeros(3), torch.zeros(3), torch.full((3,), 0.5), tau=tau)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False), st.floats(min_value=1 + 1e-9, allow_nan=False)))
def test_bad_beta(beta):
    pi = torch.full((4,), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match="beta"): geometric_mixture(pi, pi, beta)
    with pytest.raises(ValueError, match="beta"):
        tabular_loss(pi.log().requires_grad_(), bradley_terry_matrix(torch.zeros(4)), pi, 0.1, "ipo_md", beta=beta)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-9, allow_nan=False), st.floats(min_value=1 + 1e-9, allow_nan=False), st.just(float("nan"))))
def test_bad_preferences(bad):
    p = torch.tensor([0.5, bad, 0.2], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\[0, 1\]"): soft_label(ipo_loss, p, *_pair(), tau=1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"): nash_md_pg_loss(torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), p, tau=1.0)


def test_shape_mismatches():
    a, b, c, d = _pair(3)
    with pytest.raises(ValueError, match="shape"): ipo_loss(a, b[:2], c, d[:2], tau=1.0)
    with pytest.raises(ValueError, match="shape"): ipo_loss(a, b, c[:2], d, tau=1.0)
    with pytest.raises(ValueError, match="shape"): dpo_loss(torch.zeros(3, 4), b, torch.zeros(3, 4), d, tau=1.0, mask_w=torch.ones(3, 5))
    with pytest.raises(ValueError, match="shape"): soft_label(dpo_loss, torch.full((2,), 0.5), a, b, c, d, tau=1.0)
    with pytest.raises(ValueError, match="shape"): nash_md_pg_loss(a, c[:2], torch.full((3,), 0.5), tau=1.0)
    with pytest.raises(ValueError, match="pi_ref"):
        exploitability(torch.full((3,), 1 / 3), bradley_terry_matrix(torch.zeros(3)), torch.full((4,), 0.25), 0.1)
    with pytest.raises(ValueError, match="P"):
        solve_regularised_nash(torch.full((3, 3), 0.7), torch.full((3,), 1 / 3), 0.1)
    with pytest.raises(ValueError, match="eta"):
        nash_md_step(torch.full((3,), 1 / 3), bradley_terry_matrix(torch.zeros(3)), torch.full((3,), 1 / 3), 0.5, eta=3.0)
