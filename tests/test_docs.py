"""The docs pipeline without Quarto: processing never tries to install Quarto, and `build` names the missing binary."""
import json
import textwrap
from pathlib import Path

import nbformat
import pytest

import alignnb.docs as docs


def _toy_project(root: Path) -> Path:
    (root / "nbs").mkdir(parents=True)
    (root / "toyproj").mkdir()
    (root / "toyproj" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    (root / "pyproject.toml").write_text(textwrap.dedent('''
        [project]
        name = "toyproj"
        version = "0.0.1"
        [tool.nbdev]
        lib_path = "toyproj"
        jupyter_hooks = false
    '''))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("#| default_exp toy"),
        nbformat.v4.new_markdown_cell("# Toy page\n\n> A page with one function."),
        nbformat.v4.new_code_cell('#| export\ndef double(x: int) -> int:\n    "Twice `x`."\n    return 2 * x'),
        nbformat.v4.new_code_cell("double(2)"),
    ])
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    nbformat.write(nb, root / "nbs" / "00_toy.ipynb")
    return root


def test_processing_runs_without_quarto_and_never_installs_it(tmp_path, monkeypatch):
    import nbdev.quarto
    monkeypatch.setattr(nbdev.quarto, "_ensure_quarto", lambda: pytest.fail("tried to install Quarto"))
    monkeypatch.setattr(nbdev.quarto, "install_quarto", lambda *a, **k: pytest.fail("tried to install Quarto"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no quarto anywhere
    root = _toy_project(tmp_path)
    proc = docs.process_docs(root)
    assert docs.sidebar_problems(root / "nbs") == []
    assert docs.processed_problems(proc, root / "nbs") == []
    page = json.loads((proc / "00_toy.ipynb").read_text())
    text = json.dumps(page)
    assert "title: Toy page" in text and "### double" in text  # front matter and the rendered show_doc


def test_processed_page_without_title_is_reported(tmp_path):
    root = _toy_project(tmp_path)
    nb = nbformat.read(root / "nbs" / "00_toy.ipynb", as_version=4)
    nb.cells[1].source = "Just prose, no H1."
    nbformat.write(nb, root / "nbs" / "00_toy.ipynb")
    proc = docs.process_docs(root)
    assert docs.processed_problems(proc, root / "nbs") == ["00_toy.ipynb has no title (an H1 in its first markdown cell)"]


def test_build_without_quarto_stops_after_processing_and_names_the_binary(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(docs.shutil, "which", lambda name: None)
    calls = []
    monkeypatch.setattr(docs, "process_docs", lambda root=None: calls.append(root) or tmp_path / "_proc")
    assert docs.build_docs() == 1
    assert calls == [None]
    err = capsys.readouterr().err
    assert "`quarto` binary is not on PATH" in err and "_proc" in err
