"""The web page in a real browser (Debian's chromium, driven by Selenium): load ``/``, upload an
image, see the result grid, click a result to search with it; a screenshot is saved to look at.

Skipped, with the reason, where chromium and its driver are absent (.ci/run installs them)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workflows.test_query import make_fake_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SCREENSHOT_DIR = Path(os.environ.get("HASHRET_SCREENSHOTS", Path(__file__).parent / "screenshots"))

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def server(tmp_path):
    fake = make_fake_run(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HASHRET_WORKDIR": str(fake.workdir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashcli", "serve", "--port", str(port), "--engine", "torch", "-q"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
    yield fake, base
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)


def test_upload_shows_the_grid_and_a_click_searches_again(server):
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    fake, base = server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(base + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(ec.text_to_be_present_in_element((By.ID, "meta"), "images"))
        assert "18 images" in driver.find_element(By.ID, "meta").text
        driver.find_element(By.ID, "file").send_keys(str(fake.db_paths[1]))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid .card")) == 18)
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
        first = cards[0].text
        assert "#1" in first and "distance 0" in first
        # every thumbnail arrived
        wait.until(
            lambda d: all(
                img.get_attribute("src") for img in d.find_elements(By.CSS_SELECTOR, ".card img")
            )
        )
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / "serve-page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # a click searches with that result: the status names its row
        cards[5].click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "results for row"))
    finally:
        driver.quit()
