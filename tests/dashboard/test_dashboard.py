"""The ZenML dashboard in a real browser: a local server, a demo pipeline run, the DAG and the HTML report.

Set-up: Debian's ``chromium`` and ``chromium-driver`` (installed with apt-get when missing and we are root), a local
ZenML server started with ``zenml login --local --port <free port>`` under a throw-away ``ZENML_CONFIG_PATH``, and
the ``causal_lm_training`` demo (the quickest demo with a report step: ~25 s of steps) run with the same CLI a user
types. A fresh server sends the browser to an onboarding survey first; the test answers it for the default user
through the REST API (the local server runs without authentication), as clicking through the survey would.

Screenshots go to the test's tmp dir; set ``FINETUNE_SCREENSHOT_DIR`` to keep copies (docs/images/ came from there).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "causal_lm_training"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# The flags that work in a container without a display, a GPU or a network, with a fresh profile per run.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1600,1000")
WAIT_SECONDS = 180  # upper bound for one element on a loaded 2-core machine; waits end as soon as it appears


def _zenml(*args: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "zenml"), *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)


def _api(base: str, path: str, method: str = "GET", body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + "/api/v1" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def chromium():
    """Paths of Debian's chromium and its driver, installed with apt-get when missing."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if not (shutil.which("apt-get") and os.geteuid() == 0):
            pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium chromium-driver")
        install = ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]
        for command in (["apt-get", "update", "-qq"], install):
            done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            assert done.returncode == 0, f"{' '.join(command)} failed: {done.stderr[-2000:]}"
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local ZenML server on a free port with its own config dir; (url, env for CLI calls). Stopped afterwards."""
    config = tmp_path_factory.mktemp("zenml-dashboard")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "ZENML_CONFIG_PATH": str(config), "ZENML_AUTO_OPEN_DASHBOARD": "false",
           "ZENML_ANALYTICS_OPT_IN": "false", "ZENML_ENABLE_RICH_TRACEBACK": "false", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    login = _zenml("login", "--local", "--port", str(port), env=env)
    assert login.returncode == 0, login.stdout[-2000:] + login.stderr[-2000:]
    url = f"http://127.0.0.1:{port}"
    try:
        user = _api(url, "/current-user")
        _api(url, f"/users/{user['id']}/email-opt-in", "PUT", {"email_opted_in": False})
        _api(url, f"/users/{user['id']}", "PUT", {"user_metadata": {"finished_onboarding_survey": True}})
        yield url, env
    finally:
        _zenml("logout", "--local", env=env, timeout=120)


@pytest.fixture(scope="module")
def demo_run(server, tmp_path_factory):
    """The demo pipeline run through ``zenml pipeline run`` against the server: (run id, its step names)."""
    url, env = server
    work = tmp_path_factory.mktemp("demo")
    config = yaml.safe_load((ROOT / "configs" / "demo" / f"{PIPELINE}.yaml").read_text())
    config["parameters"]["data"]["source"]["output_dir"] = str(work / "text")  # not the shared .demo_data/
    path = work / f"{PIPELINE}.yaml"
    path.write_text(yaml.safe_dump(config))
    done = _zenml("pipeline", "run", f"pipelines.generation.{PIPELINE}", "-c", str(path), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = _api(url, "/runs?sort_by=desc:created&size=1")["items"][0]
    assert run["body"]["status"] == "completed"
    steps = {s["name"] for s in _api(url, f"/steps?pipeline_run_id={run['id']}&size=100")["items"]}
    return run["id"], steps


@pytest.fixture
def browser(chromium, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(str(driver)), options=options)
    session.set_page_load_timeout(WAIT_SECONDS)
    yield session
    session.quit()


def _wait(browser):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # The DAG re-renders while it lays out: stale or not-yet-clickable elements are retried, not failures.
    return WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.5, ignored_exceptions=(WebDriverException,))


def _click(browser, xpath: str) -> None:
    from selenium.webdriver.common.by import By

    def attempt(driver):
        found = driver.find_elements(By.XPATH, xpath)
        if found:
            found[-1].click()
        return bool(found)

    _wait(browser).until(attempt, f"nothing clickable at {xpath}")


def _keep(shot: Path) -> None:
    if os.environ.get("FINETUNE_SCREENSHOT_DIR"):
        target = Path(os.environ["FINETUNE_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / shot.name)


def test_dashboard_shows_the_dag_and_renders_the_report(server, demo_run, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    run_id, steps = demo_run
    assert {"train_causal_lm_model", "build_causal_lm_report"} <= steps
    browser.get(f"{url}/projects/default/runs/{run_id}")

    def dag_nodes(driver):
        # Each DAG node is a button whose first line is the step (or artifact) name.
        names = {b.text.split("\n")[0] for b in driver.find_elements(By.XPATH, "//button") if b.text}
        return names if steps <= names else False

    nodes = _wait(browser).until(dag_nodes, f"DAG never showed all of {sorted(steps)}")
    assert "report" in nodes  # the report artifact is a node of its own
    dag_shot = tmp_path / f"dashboard_{PIPELINE}_dag.png"
    assert browser.save_screenshot(str(dag_shot))
    _keep(dag_shot)

    _click(browser, "//button[.//*[normalize-space(text())='report']]")
    _click(browser, "//*[@role='tab' and normalize-space(.)='Visualization']")
    _click(browser, "//button[normalize-space(.)='Load Preview']")  # the dashboard asks before rendering HTML
    frame = _wait(browser).until(lambda d: d.find_elements(By.XPATH, "//iframe[@srcdoc]"), "report never rendered")
    assert "data:image/png;base64," in frame[-1].get_attribute("srcdoc")
    browser.switch_to.frame(frame[-1])
    png = "//img[starts-with(@src, 'data:image/png;base64,')]"
    images = _wait(browser).until(
        lambda d: [i for i in d.find_elements(By.XPATH, png) if i.get_property("naturalWidth")], "no decoded PNG")
    assert "Held-out perplexity" in browser.find_element(By.TAG_NAME, "body").text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", images[0])
    browser.switch_to.default_content()
    report_shot = tmp_path / f"dashboard_{PIPELINE}_report.png"
    assert browser.save_screenshot(str(report_shot))
    _keep(report_shot)
    assert dag_shot.stat().st_size > 10_000 and report_shot.stat().st_size > 10_000
