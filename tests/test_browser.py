"""Browser check of the feature-map explorer: the course notebook 07 in JupyterLab 4, driven by headless Chromium.

What it proves that the pytest widget tests cannot: ``notebooks/07_explorer.ipynb`` runs top to bottom in a real
JupyterLab 4 frontend (ipywidgets 8 front-end extension present), the explorer's figure arrives as an image in its
Output widget, and moving the filter slider with the keyboard round-trips through the kernel and changes the image.

The notebook is copied into a temporary folder (nothing is written into ``notebooks/``); the server runs on 127.0.0.1
with a token, isolated Jupyter/IPython config, and ``PYTHONPATH`` set to this checkout, whose ``cdimlab`` the kernel
must import (checked). Screenshots go to tests/artifacts/ (git-ignored).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Where they are missing the check
skips with its reason on a learner's laptop, but **fails** in CI (``CI=true``): there it must run.

Selectors it relies on (set by ``cdimlab/viz/explorer.py``, not by the notebook): the first code cell whose output
area holds ``.cdimlab-explorer``; inside it ``.cdimlab-filter .noUi-handle`` (the filter slider's handle),
``.cdimlab-filter .widget-readout`` and ``.cdimlab-output img`` (the figure, a ``data:image/png`` src).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
COURSE_NOTEBOOK = REPO / "notebooks" / "07_explorer.ipynb"
EXPLORER_CELL = ".jp-CodeCell:has(.jp-OutputArea .cdimlab-explorer)"  # the first cell showing the explorer
CI_TRUE = {"true", "1", "yes"}
KERNEL_CDIMLAB = "kernel_cdimlab_path.txt"  # written by the kernel at start-up


def _missing_requirements() -> str | None:
    """What the browser check lacks on this machine (chromium, chromedriver, selenium, jupyterlab), or None."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return (
            f"needs Debian's chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER}); install them with "
            "`apt-get install chromium chromium-driver` (.ci/run does)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install -e '.[dev]')"
    if not (Path(sys.executable).parent / "jupyter-lab").exists():
        return f"needs jupyterlab in {Path(sys.executable).parent}"
    if not COURSE_NOTEBOOK.exists():
        return f"needs {COURSE_NOTEBOOK} (built by tools/build_notebooks.py)"
    return None


def _in_ci() -> bool:
    """True when the environment variable ``CI`` says so (``true``/``1``/``yes``, as CI services and .ci/run set)."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUE


def _require_browser() -> None:
    """Return when the check can run; else pytest.fail in CI (it must run there) or pytest.skip elsewhere."""
    reason = _missing_requirements()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(
            f"CI={os.environ['CI']}: the browser check must run in CI, but it {reason}", pytrace=False
        )
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying while polling: connection refused (OSError) and selenium's element errors."""
    try:
        from selenium.common.exceptions import WebDriverException
    except ImportError:
        return (OSError,)
    return (OSError, WebDriverException)


def _wait_for(what: str, fn: Callable[[], object], timeout: float, interval: float = 0.25) -> object:
    """Poll ``fn`` until it returns something truthy; TimeoutError naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < end:
        try:
            value = fn()
            if value:
                return value
        except _transient_errors() as err:  # the server still starting; elements appearing or going stale
            last_err = err
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_err!r})")


def _write_lab_settings(settings: Path) -> None:
    """Isolated JupyterLab settings: start the notebook's kernel without asking, never fetch news."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "autoStartDefaultKernel": True,
            "windowingMode": "none",  # keep every cell in the DOM so selectors find the widget wherever it is
        },
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for rel, value in files.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))


def _write_ipython_startup(tmp: Path) -> Path:
    """An isolated IPYTHONDIR whose startup file records which ``cdimlab`` the kernel imports (``KERNEL_CDIMLAB``)."""
    ipython = tmp / "ipython"
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    marker = tmp / KERNEL_CDIMLAB
    (startup / "00-cdimlab-path.py").write_text(
        f"import pathlib, cdimlab\npathlib.Path({str(marker)!r}).write_text(cdimlab.__file__)\n"
    )
    return ipython


@contextlib.contextmanager
def _jupyter_lab(root: Path, tmp: Path, notebook: str) -> Iterator[str]:
    """Run ``jupyter lab`` on 127.0.0.1 with a token and isolated config; yield its base URL; always stop it."""
    port, token = _free_port(), secrets.token_hex(16)
    _write_lab_settings(tmp / "settings")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    env["JUPYTER_DATA_DIR"] = str(tmp / "data")  # no user kernelspec can point the kernel at another Python
    env["IPYTHONDIR"] = str(_write_ipython_startup(tmp))
    env.pop("CDIMLAB_STATIC_WIDGETS", None)  # the explorer must show its widget, not the static fallback
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    cmd = [
        str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        "--LabApp.news_url=", "--ServerApp.open_browser=False",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "jupyter.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early; see {tmp / 'jupyter.log'}")
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                return r.status == 200

        _wait_for("jupyter lab to answer /api/status", ready, timeout=60)
        yield f"{url}/lab/tree/{notebook}?token={token}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@contextlib.contextmanager
def _chromium(tmp: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={tmp / 'chromium-profile'}"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(tmp / "chromedriver.log")),
                              options=opts)  # fmt: skip
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _run_all_cells(driver) -> None:
    """Run > Run All Cells through JupyterLab's menu bar (found by label, as a user would)."""
    from selenium.webdriver.common.by import By

    menus = driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
    run_menu = next(m for m in menus if m.text.strip() == "Run")
    run_menu.click()

    def run_all_item():
        for item in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-item"):
            label = item.find_elements(By.CSS_SELECTOR, ".lm-Menu-itemLabel")
            if label and label[0].text.strip() == "Run All Cells":
                return item
        return None

    item = _wait_for("the Run All Cells menu item", run_all_item, timeout=10)
    item.click()


def _kernel_idle(driver) -> bool:
    """The status bar says the notebook's kernel is connected and idle (running earlier can be dropped)."""
    from selenium.webdriver.common.by import By

    text = " ".join(w.text for w in driver.find_elements(By.CSS_SELECTOR, ".jp-StatusBar-Widget"))
    return "| Idle" in text and "No Kernel" not in text


def _accept_dialogs(driver) -> None:
    """Press the default button of any JupyterLab dialog (e.g. "Select Kernel") that would block the run."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept"):
        with contextlib.suppress(Exception):
            button.click()


def _explorer_cell(driver):
    """The first code cell whose output area shows the explorer widget (wherever the notebook puts it), or None."""
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, EXPLORER_CELL)
    return cells[0] if cells else None


def _explorer_image_src(cell) -> str | None:
    """The ``data:image/png`` src of the figure in the explorer's Output widget inside ``cell``, or None."""
    from selenium.webdriver.common.by import By

    imgs = cell.find_elements(By.CSS_SELECTOR, ".cdimlab-explorer .cdimlab-output img")
    src = imgs[0].get_attribute("src") if imgs else None
    return src if src and src.startswith("data:image/png") else None


def _stderr_outputs(driver) -> str:
    """Text of error outputs on the page (shown when the explorer never appears)."""
    from selenium.webdriver.common.by import By

    sel = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    return "\n".join(e.text[-800:] for e in driver.find_elements(By.CSS_SELECTOR, sel))[-3000:]


def _open_and_run_all(driver, url: str, explorer_timeout: float) -> object:
    """Open the notebook, wait for an idle kernel, Run All Cells, wait for the explorer; return its cell."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait_for(
        "the notebook to open", lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"), 60
    )

    def kernel_ready() -> bool:
        _accept_dialogs(driver)
        return _kernel_idle(driver)

    _wait_for("the kernel to start and be idle", kernel_ready, 120)
    _run_all_cells(driver)

    def explorer_shown():
        _accept_dialogs(driver)
        return _explorer_cell(driver)

    try:
        return _wait_for(
            f"a cell showing the explorer widget ({EXPLORER_CELL})", explorer_shown, explorer_timeout
        )
    except TimeoutError as err:
        raise TimeoutError(f"{err}; error outputs on the page:\n{_stderr_outputs(driver)}") from None


def _move_filter_slider(driver, cell) -> int:
    """Focus the explorer's filter slider and press an arrow key 3 times; return the readout it must reach."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    handle = cell.find_element(By.CSS_SELECTOR, ".cdimlab-explorer .cdimlab-filter .noUi-handle")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    handle.click()
    readout = cell.find_element(By.CSS_SELECTOR, ".cdimlab-explorer .cdimlab-filter .widget-readout")
    start = int(readout.text.strip())  # the explorer starts on its best-matching filter
    key, target = (Keys.ARROW_LEFT, start - 3) if start >= 3 else (Keys.ARROW_RIGHT, start + 3)
    for _ in range(3):
        handle.send_keys(key)
    _wait_for(
        f"the filter readout to go {start} -> {target}", lambda: readout.text.strip() == str(target), 10
    )
    return target


def _drive_explorer(tmp_path: Path, notebook: Path, tag: str, explorer_timeout: float = 900) -> None:
    """Copy ``notebook`` to a temp folder, run it in JupyterLab, move the filter slider, check the figure changes.

    Artifacts: ``tests/artifacts/<tag>_before.png``, ``<tag>_after.png`` (``<tag>_failure.png`` on failure) and
    ``<tag>_timings.json`` (seconds from the server's start to each phase).
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "notebooks"
    root.mkdir(exist_ok=True)
    shutil.copy(notebook, root / notebook.name)
    t0, phases = time.monotonic(), {}
    with _jupyter_lab(root, tmp_path, notebook.name) as url, _chromium(tmp_path) as driver:
        try:
            phases["server_and_browser_up_s"] = time.monotonic() - t0
            cell = _open_and_run_all(driver, url, explorer_timeout)
            phases["explorer_shown_s"] = time.monotonic() - t0
            before = _wait_for("the explorer figure", lambda: _explorer_image_src(cell), 60)
            time.sleep(1.0)  # let "Run All" leave the idle state it may not have entered yet
            _wait_for("all cells to finish", lambda: _kernel_idle(driver), 900)
            before = _explorer_image_src(cell) or before
            phases["all_cells_done_s"] = time.monotonic() - t0
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", cell)
            driver.save_screenshot(str(ARTIFACTS / f"{tag}_before.png"))
            _move_filter_slider(driver, cell)
            _wait_for(
                "the figure to change after moving the slider",
                lambda: (src := _explorer_image_src(cell)) and src != before,
                60,
            )
            _wait_for("the kernel to finish re-rendering", lambda: _kernel_idle(driver), 60)
            time.sleep(0.5)  # let the last display message reach the page
            after = _wait_for("the final figure", lambda: _explorer_image_src(cell), 10)
            driver.save_screenshot(str(ARTIFACTS / f"{tag}_after.png"))
            phases["slider_round_trip_done_s"] = time.monotonic() - t0
        except Exception:
            with contextlib.suppress(Exception):
                driver.save_screenshot(str(ARTIFACTS / f"{tag}_failure.png"))
            raise
    timings = {k: round(v, 1) for k, v in phases.items()}
    (ARTIFACTS / f"{tag}_timings.json").write_text(json.dumps(timings, indent=1))
    assert after != before, "moving the filter slider must change the explorer's figure"
    assert (ARTIFACTS / f"{tag}_after.png").stat().st_size > 0
    used = Path((tmp_path / KERNEL_CDIMLAB).read_text()).resolve()
    assert used.is_relative_to(REPO / "cdimlab"), f"the kernel imported {used}, not this checkout's {REPO}"


@pytest.mark.browser
def test_course_explorer_notebook_in_jupyterlab(tmp_path):
    """notebooks/07_explorer.ipynb (smoke profile) in JupyterLab: Run All Cells, move the filter slider."""
    _require_browser()
    _drive_explorer(tmp_path, COURSE_NOTEBOOK, "explorer_course")


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_missing_chromium_fails_in_ci(monkeypatch, tmp_path, ci):
    """In CI a missing chromium is a failure that names what to install, not a silent skip."""
    me = sys.modules[__name__]
    monkeypatch.setattr(me, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"must run in CI.*chromium-driver"):
        me._require_browser()


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_chromedriver_skips_outside_ci(monkeypatch, tmp_path, ci):
    """On a laptop (CI unset or false) a missing chromedriver skips with the packages to install."""
    me = sys.modules[__name__]
    monkeypatch.setattr(me, "CHROMEDRIVER", tmp_path / "no-chromedriver")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=r"chromium.*chromium-driver"):
        me._require_browser()


def test_missing_course_notebook_is_named(monkeypatch, tmp_path):
    """With chromium present but no notebook 07, the reason names the notebook (a failure in CI too)."""
    me = sys.modules[__name__]
    for name in ("CHROMIUM", "CHROMEDRIVER"):
        (tmp_path / name).touch()
        monkeypatch.setattr(me, name, tmp_path / name)
    monkeypatch.setattr(me, "COURSE_NOTEBOOK", tmp_path / "07_explorer.ipynb")
    reason = me._missing_requirements()
    if reason is not None and "07_explorer" not in reason:
        pytest.skip(f"another requirement is missing first: {reason}")
    assert reason is not None and "07_explorer.ipynb" in reason and "build_notebooks" in reason


@pytest.mark.browser
def test_report_html_reads_in_a_real_browser(tmp_path):
    """``report.html`` as a reader's browser lays it out (headless Chromium, 1400 px window): a real heading, not
    raw Markdown; nothing wider than the page (plots scaled into it, no horizontal scroll); every plot image
    loaded; the floor column present; no path of the machine that made it. Screenshot in tests/artifacts/."""
    _require_browser()
    from cdimlab.experiments import EXPERIMENTS
    from cdimlab.report import write_report
    from cdimlab.utils import atomic_write_json

    for name, metrics in (("shoes_ours", {"acc@1": 0.5, "acc@10": 0.9}),
                          ("market_ours", {"mAP": 0.1, "rank1": 0.2, "mq_mAP": 0.3, "mq_rank1": 0.4})):  # fmt: skip
        atomic_write_json(tmp_path / "smoke" / f"{name}.json", {
            "experiment": name, "metrics": metrics, "paper": EXPERIMENTS[name].paper,
            "data": {"synthetic": True, "kind": "synthetic", "path": "synthetic/qmul_v1"},
            "untrained": {k: v / 2 for k, v in metrics.items()}, "chance": {k: 0.01 for k in metrics},
            "n_queries": 30})  # fmt: skip
    page = write_report(tmp_path, "smoke")["html"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with _chromium(tmp_path) as driver:
        driver.get(page.as_uri())
        facts = driver.execute_script(
            "const imgs = [...document.images];"
            "return {h1: document.querySelector('h1') ? document.querySelector('h1').innerText : null,"
            " text: document.body.innerText, scroll: document.documentElement.scrollWidth,"
            " inner: window.innerWidth, body: document.body.getBoundingClientRect().width,"
            " imgs: imgs.map(i => [i.complete && i.naturalWidth > 0, i.getBoundingClientRect().width])};"
        )
        driver.save_screenshot(str(ARTIFACTS / "report.png"))
    assert facts["h1"] and facts["h1"].startswith("The Devil is in the Middle")
    assert not facts["text"].lstrip().startswith("#") and "**" not in facts["text"]
    assert facts["scroll"] <= facts["inner"], (
        f"the page scrolls sideways: {facts['scroll']} > {facts['inner']} px"
    )
    assert facts["imgs"] and all(ok for ok, _ in facts["imgs"]), "a plot image did not load"
    assert all(w <= facts["body"] + 1 for _, w in facts["imgs"]), "a plot is wider than the page"
    assert "untrained / chance" in facts["text"] and "(n=30)" in facts["text"]
    assert str(tmp_path) not in facts["text"] and str(REPO) not in facts["text"]
