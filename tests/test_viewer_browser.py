"""The web viewer in a real browser: Debian's headless Chromium driven by Selenium (its own chromedriver, nothing
downloaded) opens BreastLab's OHIF on the session's Orthanc, lists the studies, and renders an ultrasound image.
Skipped, with the reason, where Chromium or Orthanc is missing (.ci/run installs both)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orthanc import missing

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# what this offline, GPU-less browser may log as errors: web fonts (no internet), the icons the build's manifest names
# outside /ohif/, and a software-WebGL notice
ALLOWED_ERRORS = ("fonts.googleapis.com", "android-chrome-", "WebGL")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(missing() is not None, reason=str(missing())),
              pytest.mark.skipif(not (CHROMIUM.is_file() and DRIVER.is_file()),
                                 reason="Chromium not installed (apt-get install chromium chromium-driver)")]


@pytest.fixture(scope="module")
def browser():
    """Chromium with its temp files (its profile, its socket) in a folder of /tmp removed afterwards: a Unix socket's
    path must fit 107 bytes, which the run's (under xdist, nested) temp folder may not leave."""
    import os
    import shutil
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,900", "--no-first-run"):
        options.add_argument(argument)
    folder = tempfile.mkdtemp(prefix="cr-", dir="/tmp")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(str(DRIVER), env={**os.environ, "TMPDIR": folder}), options=options)
        yield driver
        driver.quit()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_for(condition, timeout: float = 60.0):
    """``condition()`` once truthy, polled until ``timeout`` s (then its last value)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.25)
    return value


def screenshot(driver) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))


def errors_logged(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(allowed in e["message"] for allowed in ALLOWED_ERRORS)]


def test_the_study_list_shows_the_pacs_studies(browser, pacs, pacs_server):
    from selenium.webdriver.common.by import By

    browser.get(f"{pacs_server.url}/ohif/")
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-cy='study-list-results'] tbody tr")
                    or browser.find_elements(By.CSS_SELECTOR, "tbody tr"))
    shown = " ".join(row.text for row in rows)
    assert len(rows) >= len(pacs.cases) and "US" in shown and "MG" in shown, shown[:500]
    assert errors_logged(browser) == []


def test_an_ultrasound_study_renders_in_the_viewer(browser, pacs, pacs_server):
    from selenium.webdriver.common.by import By

    source, pixels = pacs.cases["case002"]
    started = time.monotonic()
    browser.get(f"{pacs_server.url}/ohif/viewer?StudyInstanceUIDs={source.StudyInstanceUID}")
    canvas = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".cornerstone-canvas"))
    assert canvas, "no viewport canvas"

    def rendered() -> bool:
        box = {key: int(value) for key, value in canvas[0].rect.items()}
        shot = screenshot(browser)[box["y"]:box["y"] + box["height"], box["x"]:box["x"] + box["width"]]
        return shot.size > 0 and shot.std() > 20  # the speckled ultrasound image, not an empty black viewport

    assert wait_for(rendered), "the image never rendered"
    print(f"page load to rendered image: {time.monotonic() - started:.1f} s")
    assert errors_logged(browser) == []
