"""README.md is generated from nbs/index.ipynb and must not drift from it."""
from pathlib import Path

from alignnb.docs import readme_markdown, readme_is_current

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_generated_from_the_index_notebook():
    expected = readme_markdown(ROOT / "nbs" / "index.ipynb")
    actual = (ROOT / "README.md").read_text()
    assert actual == expected, "README.md differs from nbs/index.ipynb: run `make readme` (alignnb-docs readme)"
    assert readme_is_current(ROOT)


def test_drift_is_detected(tmp_path):
    # a copy of the project whose README was edited by hand must be reported as drifted
    (tmp_path / "nbs").mkdir()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "nbs" / "index.ipynb").write_text((ROOT / "nbs" / "index.ipynb").read_text())
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text() + "\nhand edit\n")
    assert not readme_is_current(tmp_path)
    (tmp_path / "README.md").write_text(readme_markdown(tmp_path / "nbs" / "index.ipynb"))
    assert readme_is_current(tmp_path)


def test_readme_states_both_commands_and_the_nbdev2_note():
    text = (ROOT / "README.md").read_text()
    assert "make reproduce" in text and "make test" in text
    assert "[tool.nbdev]" in text and "settings.ini" in text
