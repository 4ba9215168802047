"Cross-checks of alignnb.active_ner: enumeration, counting, scipy entropies, seqeval, hypothesis properties, errors."
import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from alignnb.data import Sentence, ner_corpus, read_conll
from alignnb.active_ner import (
    ActiveLearningConfig, AcquisitionScores, BiLSTMCRF, CNNCNNLSTM, CallbackOracle, DropoutSamples, GoldOracle,
    NERVocabulary, TaggerConfig, active_learning, bald_from_samples, build_vocabulary, encode_batch, entity_f1,
    iob2_to_iobes, least_confidence, mnlp, select_by_budget, tag_inventory, token_mutual_information)

torch.set_num_threads(1)
TINY = TaggerConfig(word_embedding=4, char_embedding=4, char_channels=4, word_channels=4, decoder_hidden=4,
                    tag_embedding=3, lstm_hidden=3, dropout=0.3)
VOCAB = NERVocabulary({"a": 2, "b": 3, "c": 4}, {"a": 2, "b": 3, "c": 4}, tag_inventory(("X",)))


def _sentence(words):
    return Sentence(list(words), ["O"] * len(words))


def _tiny_models(seed):
    torch.manual_seed(seed)
    lstm, crf = CNNCNNLSTM(VOCAB, TINY).eval(), BiLSTMCRF(VOCAB, TINY).eval()
    with torch.no_grad():
        for p in itertools.chain(lstm.out.parameters(), [crf.transitions, crf.start, crf.end]): p.normal_(0, 2)
    return lstm, crf


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), words=st.lists(st.sampled_from("abc"), min_size=1, max_size=4))
def test_sequence_distributions_sum_to_one_and_decoders_match_enumeration(seed, words):
    lstm, crf = _tiny_models(seed)
    s, S = _sentence(words), VOCAB.n_tags
    Y = torch.tensor(list(itertools.product(range(S), repeat=len(words))))
    many, one = encode_batch([s] * len(Y), VOCAB, False), encode_batch([s], VOCAB, False)
    with torch.no_grad():
        for model in (lstm, crf):
            logp = model.sequence_log_prob(many, Y).double()
            assert abs(logp.exp().sum().item() - 1) < 1e-4
        d = crf.decode(one)  # Viterbi: the exact argmax of the enumeration
        lp = crf.sequence_log_prob(many, Y)
        assert d.tags[0].tolist() == Y[lp.argmax()].tolist()
        assert abs(least_confidence(d)[0].item() - (1 - lp.exp().max().item())) < 1e-4
        g = lstm.decode(one)  # greedy: its probability is the teacher-forced one, at most the maximum
        lp = lstm.sequence_log_prob(many, Y)
        assert abs(g.log_prob[0].item() - lp[(Y == g.tags[0]).all(1)][0].item()) < 1e-4
        assert g.log_prob[0].item() <= lp.max().item() + 1e-5
        step = lstm.step_log_probs(one, g.tags)[0]  # (n, S): greedy = the stepwise argmax after its own prefix
        assert g.tags[0].tolist() == step.argmax(-1).tolist()
        assert abs(mnlp(g)[0].item() - step.max(-1).values.mean().item()) < 1e-5


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=40), data=st.data())
def test_select_by_budget_reaches_the_budget_and_overshoots_by_less_than_a_sentence(lengths, data):
    lengths = np.array(lengths)
    budget = data.draw(st.integers(1, int(lengths.sum())))
    scores = np.array(data.draw(st.lists(st.floats(-5, 5), min_size=len(lengths), max_size=len(lengths))))
    picked = select_by_budget(AcquisitionScores(scores, np.zeros(len(lengths)), "mnlp"), lengths, budget)
    got = lengths[picked].sum()
    assert budget <= got and got - lengths[picked[-1]] < budget
    assert len(set(picked)) == len(picked)
    rest = np.setdiff1d(np.arange(len(lengths)), picked)
    if len(rest): assert scores[picked].min() >= scores[rest].max()  # the most uncertain are taken


@settings(max_examples=40, deadline=None)
@given(M=st.integers(1, 8), B=st.integers(1, 5), T=st.integers(1, 4), data=st.data())
def test_bald_counts_the_modal_sequence(M, B, T, data):
    tags = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=M * B * T, max_size=M * B * T))).view(M, B, T)
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    tags = tags * (torch.arange(T) < lengths[:, None])  # padding is 0, as the decoders leave it
    bald = bald_from_samples(DropoutSamples(tags, torch.zeros(M, B, T, 3), lengths))
    for b in range(B):
        count = Counter(tuple(tags[m, b, :lengths[b]].tolist()) for m in range(M))
        assert abs(bald[b].item() - (1 - max(count.values()) / M)) < 1e-6


def test_token_mutual_information_against_scipy_entropies():
    from scipy.stats import entropy
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, 3, 5, 4, generator=g).softmax(-1)
    lengths = torch.tensor([5, 2, 3])
    samples = DropoutSamples(torch.zeros(6, 3, 5, dtype=torch.long), p, lengths)
    for reduction, f in (("mean", np.mean), ("sum", np.sum), ("max", np.max)):
        got = token_mutual_information(samples, reduction)
        for b in range(3):
            q = p[:, b, :lengths[b]].double().numpy()  # (M, n, S)
            mi = entropy(q.mean(0), axis=-1) - entropy(q, axis=-1).mean(0)
            assert abs(got[b].item() - f(mi)) < 1e-4


def test_entity_f1_on_hand_made_cases_and_iobes_conversion():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    assert entity_f1(gold, gold) == 1.0 and entity_f1(gold, gold, strict=True) == 1.0
    # 3 gold entities; predicted: PER right, LOC missed, ORG typed MISC: P = 1/2, R = 1/3, F1 = 0.4
    predicted = [["B-PER", "I-PER", "O", "O"], ["O", "B-MISC"]]
    assert abs(entity_f1(gold, predicted) - 0.4) < 1e-9
    assert iob2_to_iobes(["B-A", "I-A", "I-A", "B-A", "O", "B-B"]) == ["B-A", "I-A", "E-A", "S-A", "O", "S-B"]
    stray = [["O", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    # default: a wrong PER span (token 1 alone) is a false positive: P = R = 2/3; strict: the ill-formed I-PER is
    # no entity at all: P = 2/2, R = 2/3, F1 = 0.8
    assert abs(entity_f1(gold, stray) - 2 / 3) < 1e-9 and abs(entity_f1(gold, stray, strict=True) - 0.8) < 1e-9


def test_padded_batches_score_like_single_sentences():
    torch.manual_seed(0)
    sentences = ner_corpus(8, seed=3)
    vocab = build_vocabulary(sentences)
    for model in (CNNCNNLSTM(vocab).eval(), BiLSTMCRF(vocab).eval()):
        with torch.no_grad():
            together = model.decode(encode_batch(sentences, vocab, False))
            for k, s in enumerate(sentences):
                alone = model.decode(encode_batch([s], vocab, False))
                assert together.tags[k, :len(s)].tolist() == alone.tags[0].tolist()
                assert abs(mnlp(together)[k].item() - mnlp(alone)[0].item()) < 1e-5


def test_loop_budgets_and_oracle_on_iob1_conll_with_docstart(tmp_path):
    pool, test = ner_corpus(120, seed=0), ner_corpus(20, seed=0, split="test")
    lines = ["-DOCSTART- -X- -X- O", ""]
    for s in pool:  # IOB1: B- only between two entities of one type
        tags = [("I" + t[1:]) if t.startswith("B-") and (i == 0 or s.tags[i - 1][2:] != t[2:]) else t
                for i, t in enumerate(s.tags)]
        lines += [f"{t} NN O {g}" for t, g in zip(s.tokens, tags)] + [""]
    (tmp_path / "train.txt").write_text("\n".join(lines))
    read = read_conll(tmp_path / "train.txt")
    assert [s.tags for s in read] == [s.tags for s in pool]
    asked = []
    oracle = CallbackOracle(lambda ss: asked.append(ss) or GoldOracle().label(ss))
    cfg = ActiveLearningConfig(strategy="bald", rounds=3, min_steps=5, epochs_per_round=1, scratch_epochs=1,
                               n_samples=4)
    run = active_learning(read, test, cfg, oracle)
    budget = math.ceil(cfg.round_share * sum(len(s) for s in read))
    for a in asked[1:]:
        got = sum(len(s) for s in a)
        assert budget <= got < budget + len(a[-1])
    assert len(set(run.labelled)) == len(run.labelled) == sum(len(a) for a in asked)
    assert [r.round for r in run.log] == [0, 1, 2, 3]


def test_named_errors():
    pool = ner_corpus(30, seed=0)
    vocab = build_vocabulary(pool)
    with pytest.raises(ValueError, match="empty sentence"): encode_batch([Sentence([], [])], vocab)
    with pytest.raises(ValueError, match="B-FOO"): encode_batch([Sentence(["x"], ["B-FOO"])], vocab)
    scores = AcquisitionScores(np.zeros(3), np.zeros(3), "random")
    with pytest.raises(ValueError, match="larger than the pool"): select_by_budget(scores, [1, 2, 3], 7)
    with pytest.raises(ValueError, match="budget"): select_by_budget(scores, [1, 2, 3], 0)
    with pytest.raises(ValueError, match="unknown strategy"):
        active_learning(pool, pool[:3], ActiveLearningConfig(strategy="entropy"))
    with pytest.raises(ValueError, match="outside the tag set"):
        active_learning(pool, pool[:3], ActiveLearningConfig(rounds=0, min_steps=1),
                        CallbackOracle(lambda ss: [["B-FOO"] * len(s) for s in ss]))
    with pytest.raises(ValueError, match="reduction"):
        token_mutual_information(DropoutSamples(torch.zeros(1, 1, 1, dtype=torch.long), torch.ones(1, 1, 1, 1),
                                                torch.tensor([1])), "median")


def test_an_oracle_must_say_how_it_labels():
    """`Oracle` is abstract: a subclass without `label` cannot be made (it once raised only when first asked)."""
    from alignnb.active_ner import Oracle
    class Silent(Oracle): pass
    with pytest.raises(TypeError, match="abstract"):
        Silent()
