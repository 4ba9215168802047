"""LabelSchema parsing and validation: malformed files name the offending entry; the guidance tree's cycle and
reachability checks agree with the standard library's graph sorter on random graphs; round trips."""
import copy, graphlib, json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from alignnb.cal import LabelSchema, SchemaError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "data_samples" / "cal" / "support_schema.yaml"
RAW = yaml.safe_load(SCHEMA_PATH.read_text())


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels:\n  - name: a\n    definition: [unclosed\n")
    with pytest.raises(SchemaError, match="not valid YAML"): LabelSchema.load(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"labels": [')
    with pytest.raises(SchemaError, match="not valid JSON"): LabelSchema.load(bad_json)
    with pytest.raises(FileNotFoundError): LabelSchema.load(tmp_path / "missing.yaml")
    with pytest.raises(SchemaError, match="must be a mapping"): LabelSchema.from_yaml("- just\n- a list\n")
    with pytest.raises(SchemaError, match=r"labels\[0\] must be a mapping"): LabelSchema.from_dict({"labels": ["a"]})


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["labels"][3]["apt_when"][1].update({"in": ["quesion"]}), r"labels\[3\] 'clarify'.apt_when\[1\] names unknown labels \['quesion'\]"),
    (lambda d: d["labels"][0].update({"definition": " "}), r"labels\[0\] 'greeting' is undocumented"),
    (lambda d: d["labels"][1].update({"examples": "one string"}), r"labels\[1\] 'question'.examples must be a list"),
    (lambda d: d["labels"][1]["apt_when"][0].update({"previous": "x"}), r"exactly one of 'item' or 'previous'"),
    (lambda d: d["guidance"]["nodes"]["agent_done"]["answers"].update({"Information": "anser"}), r"guidance.nodes.agent_done.answers\['Information'\] -> 'anser' is neither"),
    (lambda d: d["guidance"]["nodes"]["agent_done"].update({"answers": {"only": "answer"}}), r"at least two answers"),
    (lambda d: d.update({"lables": []}), r"unknown keys \['lables'\]"),
])
def test_bad_schema_names_the_entry(edit, message):
    d = copy.deepcopy(RAW)
    edit(d)
    with pytest.raises(SchemaError, match=message): LabelSchema.from_dict(d)


def test_json_and_yaml_agree(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(RAW))
    assert LabelSchema.load(tmp_path / "s.json").to_dict() == LabelSchema.load(SCHEMA_PATH).to_dict()


graphs = st.integers(2, 6).flatmap(lambda n: st.lists(
    st.lists(st.one_of(st.integers(0, n - 1), st.sampled_from(["L0", "L1"])), min_size=2, max_size=3, unique=True),
    min_size=n, max_size=n))


@settings(max_examples=200, deadline=None)
@given(graphs)
def test_tree_checks_agree_with_graphlib(edges):
    "A random answer graph is accepted iff the part reachable from node 0 is acyclic and reaches every node."
    nodes = {f"n{i}": {"question": f"q{i}?", "answers": {f"a{j}": (f"n{t}" if isinstance(t, int) else t)
                                                          for j, t in enumerate(ts)}} for i, ts in enumerate(edges)}
    d = {"labels": [{"name": "L0", "definition": "zero"}, {"name": "L1", "definition": "one"}],
         "guidance": {"root": "n0", "nodes": nodes}}
    succ = {i: [t for t in ts if isinstance(t, int)] for i, ts in enumerate(edges)}
    reach, todo = {0}, [0]
    while todo:
        for t in succ[todo.pop()]:
            if t not in reach: reach.add(t), todo.append(t)
    try:
        graphlib.TopologicalSorter({i: succ[i] for i in reach}).prepare()
        cyclic = False
    except graphlib.CycleError: cyclic = True
    if cyclic:
        with pytest.raises(SchemaError, match="closes a cycle"): LabelSchema.from_dict(d)
    elif len(reach) < len(edges):
        with pytest.raises(SchemaError, match="cannot be reached"): LabelSchema.from_dict(d)
    else:
        schema = LabelSchema.from_dict(d)
        for label, paths in schema.guidance_paths().items():
            for p in paths: assert schema.guide(p).label == label


def test_keys_and_docs():
    schema = LabelSchema.load(SCHEMA_PATH)
    assert [l.key for l in schema.labels] == list("123456789")
    with pytest.raises(KeyError, match="unknown label 'nope'"): schema["nope"]
    html = schema.docs_html(["inform"])
    assert "supplies the detail" in html and "order 48213" in html
    assert schema.search_docs("") == schema.names and schema.search_docs("zzz") == []
