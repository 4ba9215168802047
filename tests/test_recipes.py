"""Every page's "Using it" recipe runs as written: its own code cells, in a fresh namespace, nothing from earlier cells.

To add a page, append its notebook path to `PAGES` (the recipe must be code cells under a `## Using it` heading, with
its own imports); `section_cells` and `run_section` work for any heading.
"""
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PAGES = [
    "nbs/10_rewards/00_transform.ipynb",
    "nbs/20_smoothdp/01_viterbi.ipynb",  # the CRF head on a local checkpoint with a head of another size
    "nbs/20_smoothdp/02_dtw.ipynb",
    "nbs/30_cachegen/00_codec.ipynb",
    "nbs/30_cachegen/01_bins.ipynb",
    "nbs/30_cachegen/02_streaming.ipynb",
    "nbs/30_cachegen/09_experiments.ipynb",
    "nbs/11_preference/00_losses.ipynb",
    "nbs/11_preference/01_games.ipynb",
    "nbs/11_preference/02_online.ipynb",
    "nbs/11_preference/09_experiments.ipynb",
    "nbs/40_calibration/09_experiments.ipynb",
    "nbs/60_captioning/09_experiments.ipynb",
]


def section_cells(notebook: str | Path, heading: str = "Using it") -> list[str]:
    "Sources of the code cells under the markdown heading `heading` (any level), up to the next heading of that level or above."
    cells = json.loads(Path(notebook).read_text())["cells"]
    out, level = [], None
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            first = source.lstrip().splitlines()[0] if source.strip() else ""
            hashes = len(first) - len(first.lstrip("#"))
            if hashes and first[hashes:].strip() == heading: level = hashes
            elif level is not None and hashes and hashes <= level: break
        elif cell["cell_type"] == "code" and level is not None:
            lines = [l for l in source.splitlines() if not l.startswith("#|")]
            if any(l.lstrip().startswith(("%", "!")) for l in lines):
                raise ValueError(f"{notebook}: a recipe cell uses IPython magics, which a plain namespace cannot run")
            out.append("\n".join(lines))
    return out


def run_section(notebook: str | Path, heading: str = "Using it") -> dict:
    "Execute the section's code cells in order, in one fresh namespace; return the namespace."
    cells = section_cells(notebook, heading)
    if not cells: raise AssertionError(f"{notebook}: no code cells under '{heading}'")
    namespace = {"__name__": "__recipe__"}
    for i, source in enumerate(cells):
        exec(compile(source, f"{notebook} [{heading} cell {i}]", "exec"), namespace)
    return namespace


def test_section_cells_reads_only_its_section(tmp_path):
    md = lambda s: {"cell_type": "markdown", "metadata": {}, "source": s}
    code = lambda s: {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
    nb = {"cells": [code("before = 1"), md("## Using it\n\ntext"), code("#| hide\nx = 1"), md("### detail"),
                    code("y = x + 1"), md("## Next"), code("z = 3")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "page.ipynb"
    path.write_text(json.dumps(nb))
    assert section_cells(path) == ["x = 1", "y = x + 1"]
    assert run_section(path)["y"] == 2 and "z" not in run_section(path) and "before" not in run_section(path)
    with pytest.raises(AssertionError, match="no code cells"): run_section(path, "Missing")


@pytest.mark.parametrize("page", PAGES)
def test_using_it_runs_in_isolation(page, monkeypatch, tmp_path):
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("MPLBACKEND", "Agg")):
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)  # a recipe must not rely on the notebook's folder
    import torch
    threads = torch.get_num_threads()
    try:
        run_section(ROOT / page)
    finally:
        torch.set_num_threads(threads)
        import matplotlib.pyplot as plt
        plt.close("all")
