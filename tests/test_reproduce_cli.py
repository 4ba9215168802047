"""The `alignnb-reproduce` console script, run as a user runs it: in a subprocess."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "alignnb-reproduce"


def run_cli(*args, cwd, extra_path=None):
    env = dict(os.environ, ALIGNNB_QUIET="1", MPLBACKEND="Agg")
    if extra_path: env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def dummy_module(tmp_path):
    """A method module outside the package, with a plot, registered only by name."""
    mod = tmp_path / "mods"
    mod.mkdir()
    (mod / "dummy_method.py").write_text(textwrap.dedent('''
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from alignnb.core import Claim, Result, save_figure
        def reproduce(quick=True, out=None):
            "The mean of 1..n is (n + 1) / 2."
            n = 10 if quick else 1000
            mean = sum(range(1, n + 1)) / n
            fig, ax = plt.subplots(); ax.plot(range(n))
            path = save_figure(fig, "dummy_line.png", out)
            error = abs(mean - (n + 1) / 2)
            exact = Claim("mean_error", "the mean of 1..n is (n+1)/2", "0", error, error, error, threshold=1e-9,
                          direction="below", level=1.0, interval="exact")
            return Result(method="dummy_method", claim="mean of 1..n is (n+1)/2", paper=str((n + 1) / 2),
                          ours={"n": n, "mean": mean}, claims=[exact], figures=[path])
    '''))
    (mod / "exploding_method.py").write_text("def reproduce(quick=True):\n    raise ValueError('boom')\n")
    return mod


def test_help_describes_the_command(tmp_path):
    p = run_cli("--help", cwd=tmp_path)
    assert p.returncode == 0
    for word in ("--full", "--out", "--module", "methods"):
        assert word in p.stdout


def test_run_with_a_registered_dummy_method(tmp_path, dummy_module):
    p = run_cli("dummy_method", "--module", "dummy_method", "--out", "res", cwd=tmp_path, extra_path=dummy_module)
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0].split()
    assert header == ["method", "claim", "ours", "interval", "rule", "verdict", "paper", "seconds"]
    row = next(l for l in p.stdout.splitlines() if l.startswith("dummy_method"))
    assert row.split()[:3] == ["dummy_method", "mean_error", "0"] and "held" in row and "exact" in row
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["quick"] is True
    (entry,) = summary["methods"]
    assert entry["verdict"] == "held" and entry["result"]["ours"] == {"n": 10, "mean": 5.5}
    fig = tmp_path / "res" / "dummy_method" / "dummy_line.png"
    # figures are listed relative to the folder of summary.json, so a committed summary names no machine's paths
    assert fig.stat().st_size > 0 and entry["result"]["figures"] == [str(Path("dummy_method") / "dummy_line.png")]
    assert (tmp_path / "res" / entry["result"]["figures"][0]).resolve() == fig.resolve()


def test_full_flag_reaches_reproduce(tmp_path, dummy_module):
    env_mods = "dummy_method"
    p = run_cli("--full", "dummy_method", "--module", env_mods, "--out", "res", cwd=tmp_path, extra_path=dummy_module)
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["quick"] is False and summary["methods"][0]["result"]["ours"]["n"] == 1000


def test_a_raising_method_makes_the_exit_code_non_zero(tmp_path, dummy_module):
    p = run_cli("--module", "dummy_method", "--module", "exploding_method", "dummy_method", "exploding_method",
                "--out", "res", cwd=tmp_path, extra_path=dummy_module)
    assert p.returncode == 1
    assert "ValueError: boom" in p.stderr
    verdicts = {m["method"]: m["verdict"] for m in json.loads((tmp_path / "res" / "summary.json").read_text())["methods"]}
    assert verdicts == {"dummy_method": "held", "exploding_method": "error"}


def test_unknown_method_exits_2_naming_the_known_ones(tmp_path, dummy_module):
    p = run_cli("nosuchmethod", "--module", "dummy_method", cwd=tmp_path, extra_path=dummy_module)
    assert p.returncode == 2
    assert "nosuchmethod" in p.stderr and "known:" in p.stderr and "dummy_method" in p.stderr
    bare = run_cli("nosuchmethod", cwd=tmp_path)  # with only the package's own methods
    assert bare.returncode == 2 and "unknown method(s) nosuchmethod; known:" in bare.stderr


def test_a_subset_run_keeps_the_other_methods_records(tmp_path, dummy_module):
    first = run_cli("--module", "dummy_method", "--module", "exploding_method", "dummy_method", "exploding_method",
                    "--out", "res", cwd=tmp_path, extra_path=dummy_module)
    assert first.returncode == 1
    again = run_cli("--full", "--module", "dummy_method", "dummy_method", "--out", "res", cwd=tmp_path,
                    extra_path=dummy_module)
    assert again.returncode == 0, again.stderr
    records = {m["method"]: m for m in json.loads((tmp_path / "res" / "summary.json").read_text())["methods"]}
    assert set(records) == {"dummy_method", "exploding_method"}
    assert records["exploding_method"]["verdict"] == "error" and records["exploding_method"]["quick"] is True
    assert records["dummy_method"]["quick"] is False and records["dummy_method"]["result"]["ours"]["n"] == 1000


def test_a_module_that_cannot_be_imported_is_one_line_and_exit_2(tmp_path):
    p = run_cli("--module", "nosuch.mod", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["alignnb-reproduce: ModuleNotFoundError: No module named 'nosuch'"]


def test_a_named_method_runs_when_another_method_module_is_broken(dummy_module, tmp_path):
    """Naming a method imports only that one: a module without `reproduce` (or failing to import) blocks nothing."""
    (dummy_module / "no_reproduce_method.py").write_text("VALUE = 1\n")
    (dummy_module / "unimportable_method.py").write_text("raise ImportError('half-built')\n")
    mods = "--module", "no_reproduce_method", "--module", "unimportable_method", "--module", "dummy_method"
    p = run_cli(*mods, "dummy_method", "--out", "res", cwd=tmp_path, extra_path=dummy_module)
    assert p.returncode == 0, p.stderr
    assert "dummy_method" in p.stdout and "held" in p.stdout
    # run them all, and the broken one is named in one line
    p = run_cli(*mods, "--list", cwd=tmp_path, extra_path=dummy_module)
    assert p.returncode == 2 and "no_reproduce_method" in p.stderr and "Traceback" not in p.stderr
