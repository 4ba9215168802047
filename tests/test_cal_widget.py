"""The Labeller driven through its widget models: enabled buttons are exactly the apt labels of an independent
rule evaluator, no sequence of clicks and keys stores an inapt label, resume, queue order, and the baseline."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from alignnb.cal import LabelSchema, LabelStore, Labeller, SpreadsheetLabeller, UnknownItemError, queue_order

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "data_samples" / "cal" / "support_schema.yaml"
SCHEMA = LabelSchema.load(SCHEMA_PATH)
RAW = yaml.safe_load(SCHEMA_PATH.read_text())
ROWS = [json.loads(l) for l in (ROOT / "data_samples" / "cal" / "support_items.jsonl").read_text().splitlines()]
ITEMS = [{k: r[k] for k in ("id", "text", "fields", "conversation", "turn")} for r in ROWS]


def reference_apt(item, previous, previous_label):
    "Eq. (1) evaluated straight from the YAML mappings, written apart from the package."
    out = []
    for lab in RAW["labels"]:
        ok = True
        for c in lab.get("apt_when", []):
            values, negate = (c["in"], False) if "in" in c else (c["not_in"], True)
            if "item" in c:
                v = item["turn"] if c["item"] == "turn" else item["fields"].get(c["item"])
            elif previous is None:
                ok = ok and negate
                continue
            elif c["previous"] == "label":
                if previous_label is None: continue
                v = previous_label
            else: v = previous["turn"] if c["previous"] == "turn" else previous["fields"].get(c["previous"])
            ok = ok and ((v in values) != negate)
        if ok: out.append(lab["name"])
    return out


def _labeller(tmp_path, items=ITEMS[:30], **kw):
    return Labeller(SCHEMA, items, LabelStore(tmp_path / "s.sqlite", schema=SCHEMA, synchronous="NORMAL"), **kw)


def test_enabled_buttons_are_the_apt_labels(tmp_path):
    lab = _labeller(tmp_path)
    by_id = {it["id"]: it for it in ITEMS}
    rng = np.random.default_rng(0)
    for _ in range(30):
        it = by_id[lab.current.id]
        prev = by_id.get(f"{it['conversation']}-t{it['turn'] - 1}")
        prev_label = None if prev is None else lab.store.label(prev["id"])
        enabled = [n for n, b in lab.label_buttons.items() if not b.disabled]
        assert enabled == reference_apt(it, prev, prev_label)
        for n, b in lab.label_buttons.items():  # a disabled button explains itself
            assert (b.disabled and b.tooltip.startswith("needs ")) or (not b.disabled and b.tooltip == SCHEMA[n].definition)
        lab.label_buttons[enabled[rng.integers(len(enabled))]].click()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(list("1234567890uspngx")), max_size=40))
def test_no_key_sequence_stores_an_inapt_label(tmp_path_factory, keys):
    lab = _labeller(tmp_path_factory.mktemp("k"), ITEMS[:12])
    for k in keys:
        item_id = lab.current.id
        apt = lab.apt()
        before = lab.store.label(item_id)
        lab.keys.value = k
        after = lab.store.label(item_id)
        if k.isdigit() and after != before: assert after in apt  # a stored label was apt when chosen
        by_key = {l.key: l.name for l in SCHEMA.labels}
        if k.isdigit() and by_key.get(k) not in apt:
            assert after == before  # an inapt or unmapped digit changes nothing
    assert lab.keys.value == ""
    assert lab.actions == len(keys)


def test_disabled_button_model_click_is_refused(tmp_path):
    lab = _labeller(tmp_path)
    lab.label_buttons["greeting"].click()
    assert lab.current.id == "c000-t1" and lab.label_buttons["answer"].disabled
    lab.label_buttons["answer"].click()  # from Python a disabled button's handlers still run: choose refuses
    assert lab.store.label("c000-t1") is None and lab.refused == 1 and "cannot be chosen" in lab.status_html.value


def test_resume_starts_at_the_first_unlabelled(tmp_path):
    lab = _labeller(tmp_path)
    for _ in range(3): lab.keys.value = "1" if lab.current.turn < 2 else "2"
    again = _labeller(tmp_path)
    assert again.current.id == lab.current.id == "c000-t3"
    again.keys.value = "s"  # a skip survives a restart: the skipped turn comes after the others
    assert _labeller(tmp_path).current.id == again.current.id == "c000-t4"


def test_skip_undo_history_notes(tmp_path):
    lab = _labeller(tmp_path)
    lab.keys.value = "s"
    assert lab.current.id == "c000-t1" and lab.store.history()[0].action == "skip"
    lab.goto("c000-t0")
    lab.keys.value = "1"
    lab.keys.value = "1"
    lab.add_note("check this one")
    lab.keys.value = "u"
    assert lab.current.id == "c000-t1" and lab.store.label("c000-t1") is None
    assert [v for _, v in lab.history_list.options] == ["c000-t0"]
    lab.history_filter.value = "thanks"
    assert lab.history_list.options == ()
    assert lab.store.notes("c000-t2")[0][2] == "check this one"  # noted where the labeller then stood


def test_wizard_reaches_every_label_by_its_paths(tmp_path):
    lab = _labeller(tmp_path)
    for label, paths in SCHEMA.guidance_paths().items():
        for path in paths:
            lab.guide_start()
            for answer in path:
                next(b for b in lab.guide_answers_box.children if b.description == answer).click()
            assert lab.guide_step.label == label
            assert lab.guide_apply.disabled == (lab.why_inapt(label) is not None)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=6, max_size=6))
def test_queue_order_is_a_stable_descending_sort(scores):
    from alignnb.cal import as_item
    items = [as_item(it) for it in ITEMS[:6]]
    expected = [it.id for _, _, it in sorted(((-s, i, it) for i, (s, it) in enumerate(zip(scores, items))),
                                             key=lambda t: (t[0], t[1]))]
    assert queue_order(items, scores) == expected
    assert queue_order(items, dict(zip([it.id for it in items], scores))) == expected


def test_order_and_bad_input(tmp_path):
    lab = _labeller(tmp_path, order=lambda its: [-len(it.text) for it in its])
    assert lab.current.text == min((it["text"] for it in ITEMS[:30]), key=len)
    with pytest.raises(UnknownItemError, match="not in this labeller's queue"): lab.goto("c999-t9")
    with pytest.raises(ValueError, match="one score per item"): lab.set_order([1.0, 2.0])
    with pytest.raises(TypeError, match="store must be a LabelStore"): Labeller(SCHEMA, ITEMS, "store.sqlite")
    with pytest.raises(ValueError, match="is not an answer"): lab.guide_answer("Perhaps")


def test_spreadsheet_accepts_anything(tmp_path):
    store = LabelStore(tmp_path / "sheet.sqlite")
    sheet = SpreadsheetLabeller(ITEMS[:5], store, SCHEMA.names)
    sheet.select("c000-t1")
    sheet.pick("closing")  # inapt: an agent's closing right after a greeting
    sheet.move()
    sheet.type_label("no idea")
    assert store.labels() == {"c000-t1": "closing", "c000-t2": "no idea"}
    assert sheet.actions == 1 + 2 + 1 + len("no idea") + 1
    with pytest.raises(ValueError, match="non-empty text"): sheet.type_label("")
