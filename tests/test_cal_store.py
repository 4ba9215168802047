"""LabelStore durability and semantics: a labelling subprocess killed with SIGKILL loses no committed label or
history entry; two processes labelling one store at once leave it whole; undo/revert against a plain model."""
import csv, json, os, signal, sqlite3, subprocess, sys, textwrap
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from alignnb.cal import LabelSchema, LabelStore, UnknownItemError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = LabelSchema.load(ROOT / "data_samples" / "cal" / "support_schema.yaml")
ROWS = [json.loads(l) for l in (ROOT / "data_samples" / "cal" / "support_items.jsonl").read_text().splitlines()]
ITEMS = [{k: r[k] for k in ("id", "text", "fields", "conversation", "turn")} for r in ROWS]

WRITER = textwrap.dedent("""
    import json, sys
    from alignnb.cal import LabelSchema, LabelStore
    path, schema_path, annotator, n, items = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    store = LabelStore(path, schema=LabelSchema.load(schema_path), annotator=annotator)
    store.add_items(json.loads(open(items).read()))
    ids = [it.id for it in store.items()]
    names = store.schema.names
    for i in range(n):
        seq = store.set_label(ids[i % len(ids)], names[i % len(names)])
        print(json.dumps([seq, ids[i % len(ids)], names[i % len(names)]]), flush=True)  # after the commit
""")


def _writer(tmp_path, annotator, n, db="labels.sqlite"):
    (tmp_path / "items.json").write_text(json.dumps(ITEMS[:40]))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / db), str(ROOT / "data_samples" / "cal" /
                             "support_schema.yaml"), annotator, str(n), str(tmp_path / "items.json")],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_sigkill_mid_run_loses_no_committed_change(tmp_path):
    proc = _writer(tmp_path, "ada", 100_000)
    reported = [json.loads(proc.stdout.readline()) for _ in range(150)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reported += [json.loads(l) for l in proc.stdout.read().splitlines() if l.strip().endswith("]")]
    store = LabelStore(tmp_path / "labels.sqlite", schema=SCHEMA)
    assert store.check() == "ok"
    history = {h.seq: h for h in store.history()}
    for seq, item_id, label in reported:  # every change the writer saw committed is on disk
        assert history[seq].item_id == item_id and history[seq].new == label
    last = {}
    for h in sorted(history.values(), key=lambda h: h.seq): last[h.item_id] = h.new
    assert store.labels("ada") == {k: v for k, v in last.items()}  # labels agree with the log's last word
    store.set_label(ITEMS[0]["id"], "thanks", "ada")  # and the store takes new work
    assert store.label(ITEMS[0]["id"], "ada") == "thanks"


def test_two_labellers_on_one_store(tmp_path):
    procs = [_writer(tmp_path, name, 200) for name in ("ada", "bob")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    store = LabelStore(tmp_path / "labels.sqlite", schema=SCHEMA)
    assert store.check() == "ok" and len(store) == 40  # both added the same items: stored once
    seqs = [json.loads(l)[0] for out in outs for l in out.splitlines()]
    assert len(seqs) == len(set(seqs)) == 400 and len(store.history()) == 400
    for name in ("ada", "bob"):
        assert len(store.history(annotator=name)) == 200 and len(store.labels(name)) == 40


def test_wal_and_append_only(tmp_path):
    store = LabelStore(tmp_path / "s.sqlite", schema=SCHEMA)
    store.add_items(ITEMS[:3])
    store.set_label(ITEMS[0]["id"], "greeting")
    assert store.journal_mode == "wal"
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store._db.execute("UPDATE history SET new='thanks'")
    raw = sqlite3.connect(tmp_path / "s.sqlite")  # another client cannot rewrite it either
    with pytest.raises(sqlite3.IntegrityError, match="append-only"): raw.execute("DELETE FROM history")


def test_bad_input(tmp_path):
    store = LabelStore(tmp_path / "s.sqlite", schema=SCHEMA)
    store.add_items(ITEMS[:3])
    with pytest.raises(UnknownItemError, match="no item with id 'nope'"): store.set_label("nope", "greeting")
    with pytest.raises(ValueError): store.label("nope")
    with pytest.raises(ValueError, match="unknown label 'greting'"): store.set_label(ITEMS[0]["id"], "greting")
    with pytest.raises(ValueError, match="other content"): store.add_items([{**ITEMS[0], "text": "changed"}])
    with pytest.raises(ValueError, match="no history entry"): store.revert(999)
    with pytest.raises(ValueError, match="a note needs text"): store.add_note(ITEMS[0]["id"], "  ")
    with pytest.raises(TypeError, match="schema must be a LabelSchema"): LabelStore(tmp_path / "t.sqlite", schema="x")
    with pytest.raises(ValueError, match="synchronous"): LabelStore(tmp_path / "u.sqlite", synchronous="OFF")


def test_exports_agree(tmp_path):
    store = LabelStore(tmp_path / "s.sqlite", schema=SCHEMA, annotator="ada")
    store.add_items(ITEMS[:10])
    for r in ROWS[:7]: store.set_label(r["id"], r["gold"])
    store.set_label(ROWS[0]["id"], "question", annotator="bob")
    with open(store.to_csv(tmp_path / "l.csv")) as f: from_csv = list(csv.DictReader(f))
    from_jsonl = [json.loads(l) for l in store.to_jsonl(tmp_path / "l.jsonl").read_text().splitlines()]
    frame = store.to_pandas()
    assert len(from_csv) == len(from_jsonl) == len(frame) == 8
    assert [(r["item_id"], r["annotator"], r["label"]) for r in from_csv] == \
           [(r["item_id"], r["annotator"], r["label"]) for r in from_jsonl] == \
           list(frame[["item_id", "annotator", "label"]].itertuples(index=False, name=None))
    expected = {(r["id"], "ada"): r["gold"] for r in ROWS[:7]} | {(ROWS[0]["id"], "bob"): "question"}
    assert {(r["item_id"], r["annotator"]): r["label"] for r in from_jsonl} == expected


ops = st.lists(st.one_of(st.tuples(st.just("label"), st.integers(0, 3), st.sampled_from(SCHEMA.names)),
                         st.tuples(st.just("undo"), st.just(0), st.just(""))), max_size=25)


@settings(max_examples=25, deadline=None)
@given(ops)
def test_undo_matches_a_stack_model(tmp_path_factory, sequence):
    "Each undo reverts the latest not-yet-undone label change to its old value, as a stack of changes would."
    store = LabelStore(tmp_path_factory.mktemp("u") / "s.sqlite", schema=SCHEMA, synchronous="NORMAL")
    store.add_items(ITEMS[:4])
    labels, stack = {}, []
    for op, i, name in sequence:
        if op == "label":
            item_id = ITEMS[i]["id"]
            stack.append((item_id, labels.get(item_id)))
            labels[item_id] = name
            store.set_label(item_id, name)
        else:
            undone = store.undo()
            if not stack: assert undone is None
            else:
                item_id, old = stack.pop()
                assert undone.item_id == item_id
                if old is None: labels.pop(item_id, None)
                else: labels[item_id] = old
    assert store.labels() == {it["id"]: labels[it["id"]] for it in ITEMS[:4] if it["id"] in labels}
    store.close()
