"""The CAL labeller in a real browser: Voila serves tests/browser/cal_labeller.ipynb on a loopback port, Debian's
Chromium (driven by Playwright, never `playwright install`) clicks a label, types a digit key, tries a disabled
label, and the test reads the SQLite file on disk; then the server (and with it the kernel) is stopped, the labels
are still in the store, and a fresh server resumes at the next unlabelled item."""
import os, shutil, signal, socket, sqlite3, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
playwright_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(folder: Path, env: dict, kind: str = "voila") -> tuple:
    "Start Voila (or JupyterLab) on a free loopback port; wait (at most 120 s) until it answers. (process, url)."
    port = _free_port()
    log = open(folder / f"{kind}-{port}.log", "w")
    if kind == "voila":
        cmd = [str(Path(sys.executable).with_name("voila")), str(folder / "cal_labeller.ipynb"), f"--port={port}",
               "--no-browser", "--Voila.ip=127.0.0.1"]
        probe = "voila/files/probe"  # not the notebook: rendering it starts a kernel
    else:
        cmd = [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={port}",
               "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root",
               f"--ServerApp.root_dir={folder}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
               "jupyterlab.NeverCheckForUpdate"]
        probe = "api/status"
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None: raise RuntimeError(f"{kind} exited: {(folder / log.name).read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + probe, timeout=5)
            return proc, url
        except urllib.error.HTTPError: return proc, url  # it answered
        except OSError: time.sleep(0.2)  # polling the server's port, not synchronising the page
    _stop(proc)
    raise RuntimeError(f"{kind} did not answer within 120 s")


def _stop(proc) -> None:
    "Stop the server and its kernel (its process group) by pid."
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _labels(db: Path) -> dict:
    with sqlite3.connect(db) as con: return dict(con.execute("SELECT item_id, label FROM labels"))


def _wait_for_label(db: Path, item_id: str, timeout: float = 30) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        label = _labels(db).get(item_id)
        if label is not None: return label
        time.sleep(0.1)
    return None


@pytest.fixture
def served(tmp_path):
    "A copy of the served notebook and six sample turns; yields a function that starts Voila, and stops them all."
    shutil.copy(ROOT / "tests" / "browser" / "cal_labeller.ipynb", tmp_path)
    rows = (ROOT / "data_samples" / "cal" / "support_items.jsonl").read_text().splitlines()[:6]
    (tmp_path / "items.jsonl").write_text("\n".join(rows) + "\n")
    env = {**os.environ, "CAL_SCHEMA": str(ROOT / "data_samples" / "cal" / "support_schema.yaml"),
           "CAL_ITEMS": str(tmp_path / "items.jsonl"), "CAL_STORE": str(tmp_path / "labels.sqlite"),
           "ALIGNNB_QUIET": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    procs = []
    def start(kind="voila"):
        proc, url = _start_server(tmp_path, env, kind)
        procs.append(proc)
        return proc, url
    yield start, tmp_path
    for p in procs: _stop(p)


def test_label_by_click_and_key_lands_on_disk_and_survives_the_kernel(served):
    start, folder = served
    db = folder / "labels.sqlite"
    artefacts = Path(os.environ.get("ALIGNNB_TEST_ARTIFACTS", folder))
    artefacts.mkdir(parents=True, exist_ok=True)
    proc, url = start()
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(90_000)
        page.goto(url)
        expect = playwright_api.expect
        item = page.locator(".cal-item")
        expect(item).to_contain_text("c000-t0", timeout=90_000)
        page.locator("button.cal-label-greeting").click()  # a click on an apt label
        expect(item).to_contain_text("c000-t1")
        assert _wait_for_label(db, "c000-t0") == "greeting"
        answer = page.locator("button.cal-label-answer")  # an agent's reply to a greeting cannot be an answer
        expect(answer).to_be_disabled()
        answer.click(force=True, timeout=5_000)  # the browser delivers no click to a disabled button
        page.locator(".cal-keys input").press_sequentially("1")  # digit key 1: greeting
        expect(item).to_contain_text("c000-t2")
        assert _wait_for_label(db, "c000-t1") == "greeting"
        page.screenshot(path=str(artefacts / "cal_labeller.png"), full_page=True)
        browser.close()
    with sqlite3.connect(db) as con:
        history = con.execute("SELECT item_id, new FROM history ORDER BY seq").fetchall()
    assert history == [("c000-t0", "greeting"), ("c000-t1", "greeting")]  # the disabled 'answer' never arrived
    _stop(proc)  # the kernel goes with the server
    assert _labels(db) == {"c000-t0": "greeting", "c000-t1": "greeting"}
    with sqlite3.connect(db) as con: assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    proc, url = start()  # a fresh server and kernel resume where labelling stopped
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        playwright_api.expect(page.locator(".cal-item")).to_contain_text("c000-t2", timeout=90_000)
        browser.close()
    assert (artefacts / "cal_labeller.png").stat().st_size > 10_000


def test_jupyterlab_once(served):
    "The same widget in JupyterLab: open the notebook, run all cells, click a label, find it on disk."
    start, folder = served
    db = folder / "labels.sqlite"
    proc, url = start("lab")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(90_000)
        page.goto(url + "lab/tree/cal_labeller.ipynb")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)  # a run sent earlier is dropped
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        greeting = page.locator("button.cal-label-greeting")
        greeting.wait_for(timeout=120_000)
        greeting.click()
        playwright_api.expect(page.locator(".cal-item")).to_contain_text("c000-t1")
        assert _wait_for_label(db, "c000-t0") == "greeting"
        browser.close()
    _stop(proc)
    assert _labels(db) == {"c000-t0": "greeting"}
