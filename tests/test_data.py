"""Cross-checks of alignnb.data: entity spans and IOB1 conversion against seqeval, CoNLL round trips, the corpora."""
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from seqeval.metrics import f1_score
from seqeval.metrics.sequence_labeling import get_entities

from alignnb.data import (NER_DOMAINS, NER_TYPES, Sentence, conll_text, entity_spans, iob1_to_iob2, ner_corpus,
                          python_docs_corpus, read_conll, train_valid_split, write_conll)

tags_strategy = st.lists(st.sampled_from(["O"] + [f"{p}-{t}" for p in "BI" for t in NER_TYPES]), max_size=30)
token_strategy = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="\ufeff"),
                         min_size=1, max_size=8)


def seqeval_spans(tags):
    return [(t, a, b + 1) for t, a, b in get_entities(list(tags))]


@settings(max_examples=300, deadline=None)
@given(tags_strategy)
def test_entity_spans_match_seqeval(tags):
    # seqeval's chunker follows conlleval: an I-X after anything but X opens a chunk, as ours does
    assert entity_spans(tags) == sorted(seqeval_spans(tags), key=lambda s: s[1])


@settings(max_examples=300, deadline=None)
@given(tags_strategy)
def test_iob1_to_iob2_keeps_the_entities_and_is_iob2(tags):
    iob2 = iob1_to_iob2(tags)
    assert seqeval_spans(iob2) == seqeval_spans(tags)
    for i, tag in enumerate(iob2):  # IOB2: every I-X continues an X
        if tag.startswith("I-"): assert i > 0 and iob2[i - 1][2:] == tag[2:]
    assert iob1_to_iob2(iob2) == iob2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 12).flatmap(lambda n: st.tuples(st.lists(token_strategy, min_size=n, max_size=n),
                                                                   st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC"]), min_size=n, max_size=n))),
                max_size=6))
def test_conll_round_trip_fuzzed(pairs):
    sentences = [Sentence(tokens, iob1_to_iob2(tags)) for tokens, tags in pairs]
    assert read_conll(conll_text(sentences)) == sentences


def test_a_token_read_conll_would_strip_or_refuse_is_refused_by_sentence():
    """A BOM token at a line's start was written, then stripped on reading (found by the fuzz test above)."""
    for token in ("\ufeff", "a\ufeffb", "a\x00"):
        with pytest.raises(ValueError, match="BOM or NUL"):
            Sentence([token], ["O"])


def test_round_trip_through_a_file(tmp_path):
    sentences = ner_corpus(300, seed=5, domain="sports", split="test")
    path = write_conll(sentences, tmp_path / "deep" / "sports.conll")
    assert read_conll(path) == sentences and read_conll(str(path)) == sentences


HAND_WRITTEN = """-DOCSTART- -X- -X- O

SOCCER NN B-NP O
- : O O
JAPAN NNP B-NP I-LOC
GET VB B-VP O
LUCKY NNP B-NP O
WIN NNP I-NP O
, , O O
CHINA NNP B-NP I-PER
IN IN B-PP O
SURPRISE DT B-NP O
DEFEAT NN I-NP O
. . O O

Nadim NNP B-NP I-PER
Ladki NNP I-NP I-PER

-DOCSTART- -X- -X- O

Hans NNP B-NP I-PER
Peter NNP I-NP B-PER
Schmidt NNP I-NP I-PER
visited VBD B-VP O
Bad NNP B-NP I-LOC
Homburg NNP I-NP I-LOC
"""


def test_hand_written_conll_snippet():
    sentences = read_conll(HAND_WRITTEN)
    assert [len(s) for s in sentences] == [12, 2, 6]
    assert sentences[0].tokens[2] == "JAPAN" and sentences[0].tags[2] == "B-LOC" and sentences[0].tags[7] == "B-PER"
    assert sentences[1].tags == ["B-PER", "I-PER"]
    # IOB1: B-PER separates two adjacent persons
    assert sentences[2].entities == [("PER", 0, 1), ("PER", 1, 3), ("LOC", 4, 6)]


@pytest.mark.parametrize("text, line", [("EU I-ORG\nrejects\n", 2), ("EU I-ORG\n\n\nGerman B-\nx O\n", 4),
                                        ("a O\nb E-PER\n", 2), ("-DOCSTART- O\n\na O\nb\n", 4)])
def test_malformed_conll_names_the_line(text, line):
    with pytest.raises(ValueError, match=f"line {line}"): read_conll(text)


def test_ner_corpus_is_deterministic_and_valid():
    a, b = ner_corpus(400, seed=7, domain="finance"), ner_corpus(400, seed=7, domain="finance")
    assert a == b and a != ner_corpus(400, seed=8, domain="finance")
    for s in a:  # generated tags are valid IOB2 and seqeval agrees on the entities
        assert iob1_to_iob2(s.tags) == s.tags
        assert entity_spans(s.tags) == seqeval_spans(s.tags)


def test_every_domain_has_every_type():
    for domain in NER_DOMAINS:
        types = {k for s in ner_corpus(500, domain=domain) for k, _, _ in s.entities}
        assert types == set(NER_TYPES), (domain, types)


def test_test_split_names_are_held_out():
    def names(ss): return {" ".join(s.tokens[a:b]) for s in ss for _, a, b in s.entities}
    for domain in NER_DOMAINS:
        assert not names(ner_corpus(1500, domain=domain)) & names(ner_corpus(500, domain=domain, split="test"))


def test_memorising_tagger_fails_on_test_split():
    # a dictionary tagger that memorises training entities scores far lower on held-out names: the split is real
    train, test = ner_corpus(2000, seed=0), ner_corpus(300, seed=0, split="test")
    lexicon = {t: g[2:] for s in train for t, g in zip(s.tokens, s.tags) if g != "O"}
    def tag(s):
        out = [f"I-{lexicon[t]}" if t in lexicon else "O" for t in s.tokens]
        return iob1_to_iob2(out)
    same = ner_corpus(300, seed=1)
    f1_seen = f1_score([s.tags for s in same], [tag(s) for s in same])
    f1_held_out = f1_score([s.tags for s in test], [tag(s) for s in test])
    assert f1_seen > 0.6 and f1_held_out < f1_seen - 0.3, (f1_seen, f1_held_out)


def test_unknown_domain_and_split_name_the_known_ones():
    with pytest.raises(ValueError, match="known domains: \\['news', 'sports', 'finance'\\]"): ner_corpus(3, domain="legal")
    with pytest.raises(ValueError, match="known splits"): ner_corpus(3, split="dev")


def test_python_docs_corpus_is_prose():
    docs = python_docs_corpus()
    assert len(docs) > 1000 and len(set(docs)) == len(docs)
    text = "\n".join(docs)
    assert ">>>" not in text and "::=" not in text
    words = text.split()
    common = {"the", "of", "a", "is", "to", "and", "in"}  # English function words make up a large share of prose
    assert sum(w.lower() in common for w in words) / len(words) > 0.15


def test_train_valid_split():
    docs = [f"doc{i}" for i in range(101)]
    train, valid = train_valid_split(docs, 0.2, seed=3)
    assert len(valid) == 20 and sorted(train + valid) == sorted(docs)
    assert train == [d for d in docs if d in set(train)]  # original order kept
    with pytest.raises(ValueError, match="frac"): train_valid_split(docs, 0.0)


from hypothesis import given, settings, strategies as st


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab B-I-ORGPERO\n\t\x00\ufeff-DOCSTART")), max_size=60))
def test_read_conll_parses_or_raises_a_named_error(text):
    """Any text is either read into sentences of equal token and tag counts, or refused with a named error."""
    try:
        sentences = read_conll(text if "\n" in text or len(text.split()) != 1 else text + "\n")
    except ValueError as e:
        assert "line" in str(e) or "tag" in str(e), e
        return
    for s in sentences:
        assert len(s.tokens) == len(s.tags) > 0
        assert all("\x00" not in t and "\ufeff" not in t for t in s.tokens)


def test_read_conll_names_a_missing_file(tmp_path):
    import pytest
    with pytest.raises(FileNotFoundError, match="no such CoNLL file"):
        read_conll(str(tmp_path / "missing.conll"))
