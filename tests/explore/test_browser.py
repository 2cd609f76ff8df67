"""A real browser (headless Debian Chromium, driven by Selenium) looks at the explorer.

The explorer runs under uvicorn on a free 127.0.0.1 port over a store seeded from the
corpus; the test checks what a person would see (thumbnails decoded, caption text, the
highlighted citation contexts, the PDF page) and saves screenshots into its tmp folder.
Set FIGALIGN_UPDATE_DOCS_SCREENSHOT=1 to also refresh docs/explorer.png.

Needs: apt packages ``chromium chromium-driver``; pip ``selenium`` (see requirements.txt).
Installs nothing itself; skips with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from figalign.config import Settings
from tests.explore.seed import seed

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "explorer.png"

if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
    pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs the selenium package (requirements.txt)")
pytest.importorskip("pymupdf")

pytestmark = pytest.mark.slow


@pytest.fixture
def served(sqlite_engine, sqlite_url, tmp_path):
    """(base URL, seeded ids): the explorer under uvicorn on a free port."""
    import uvicorn

    from figalign.explore.app import create_app

    seeded = seed(sqlite_engine, tmp_path / "data")
    app = create_app(Settings(database_url=sqlite_url, data_dir=tmp_path / "data"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seeded
    server.should_exit = True
    thread.join(timeout=10)
    app.state.engine.dispose()


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_images(driver, selector: str, timeout: float = 20.0) -> list[int]:
    """naturalWidth of every image matching ``selector`` once all have finished loading."""
    script = ("return Array.from(document.querySelectorAll(arguments[0]))"
              ".map(i => { i.loading = 'eager'; return i.complete ? i.naturalWidth : -1; });")
    deadline = time.monotonic() + timeout
    while True:
        widths = driver.execute_script(script, selector)
        if widths and all(w >= 0 for w in widths) or time.monotonic() > deadline:
            return widths
        time.sleep(0.1)


def test_grid_and_figure_page_show_what_a_person_expects(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    base, sd = served
    browser.get(base + "/")  # the default view: what the dataset holds, every card an image
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")
    assert len(cards) == 7 and not browser.find_elements(By.CSS_SELECTOR, ".noimg")
    widths = wait_images(browser, ".card img")
    assert len(widths) == 7 and all(w > 0 for w in widths), widths
    assert "no image" not in browser.find_element(By.ID, "grid").text
    browser.get(base + "/?show=all")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".card")) == 8  # the duplicate too
    browser.get(base + "/")
    assert "Distribution of GAS pharyngitis" in browser.find_element(By.ID, "grid").text
    browser.save_screenshot(str(tmp_path / "grid.png"))

    # Filter like a person would: choose the licence, apply.
    browser.get(base + "/?licence=cc-by&sort=-gain%3Aclip_cosine")
    ids = [int(c.get_attribute("data-figure-id")) for c in browser.find_elements(By.CSS_SELECTOR, ".card")]
    assert ids == [sd.pone_figures[n] for n in "123"]
    browser.save_screenshot(str(tmp_path / "grid_filtered.png"))

    browser.find_element(By.CSS_SELECTOR, f'.card[data-figure-id="{ids[0]}"] a').click()
    assert browser.current_url.endswith(f"/figure/{ids[0]}")
    browser.execute_script("document.getElementById('page').scrollIntoView()")
    crop, page = wait_images(browser, "#crop, #page", timeout=40)
    assert crop == 726 and page > 800  # the real PNG, and a 110 dpi page render
    original = browser.find_element(By.CSS_SELECTOR, '.caption[data-kind="original"]').text
    assert "Distribution of GAS pharyngitis according to age in Brussels and Brasília" in original
    marks = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#contexts mark")]
    assert marks == ["Figure 1"]
    assert "recaption under prompt v1" in browser.find_element(By.TAG_NAME, "body").text
    assert "figalign_parse" in browser.find_element(By.ID, "stage-runs").text
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "figure.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("FIGALIGN_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_PNG)

    browser.get(base + "/stages")
    assert "BadInputError" in browser.find_element(By.ID, "failures").text
    browser.save_screenshot(str(tmp_path / "stages.png"))
    for name in ("grid.png", "grid_filtered.png", "figure.png", "stages.png"):
        assert (tmp_path / name).stat().st_size > 10_000
