"""The playground page in a real headless Chromium (Debian's, driven by Selenium) against a live
``tta serve`` on the bundled world models, with an API key: upload, run, compare, errors,
keyboard and phone width. ``TTA_PLAYGROUND_SCREENSHOTS=docs/images`` keeps the screenshots there."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from service.api.auth import append_key
from service.api.playground import STATIC_DIR
from service.redis_server import free_port
from tests.integration.conftest import encode, tta_serve
from tests.openai_standin import StandInMLLM
from world.glyphs import CLASS_NAMES
from world.render import render

DEMO = STATIC_DIR / "samples" / "demo.png"
MANIFEST = json.loads((STATIC_DIR / "samples" / "manifest.json").read_text())
# Records, in mutation order, when each part of a run first enters the results area.
WATCH_ORDER = """
window.__seen = [];
const parts = [["zeroshot", "[data-part=zeroshot]"], ["step", ".step-point"], ["final", "[data-part=final]"]];
new MutationObserver((records) => {
  for (const record of records) for (const node of record.addedNodes) {
    if (!(node instanceof Element)) continue;
    for (const [name, selector] of parts) {
      if (!window.__seen.includes(name) && (node.matches(selector) || node.querySelector(selector))) {
        window.__seen.push(name);
      }
    }
  }
}).observe(document.getElementById("results"), {childList: true, subtree: true});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("playground")
    # The MLLM is a stand-in (no MLLM weights here) that believes the demo shows a sun.
    mllm = StandInMLLM(supported=MANIFEST["samples"][0]["truth"], belief=0.8).start()
    key = append_key(tmp / "keys.txt", "alice")
    port = free_port()
    env = {**os.environ, "TTA_MODEL": "world-policy", "TTA_REWARD_MODEL": "world-reward",
           "TTA_DEVICE": "cpu", "TTA_DATA_DIR": str(tmp / "data"), "TTA_API_KEYS_FILE": str(tmp / "keys.txt"),
           "TTA_WORKER_METRICS_PORT": "0", "TTA_HEARTBEAT_S": "0.5",
           "TTA_MLLM": f"openai:{mllm.base_url}", "TTA_MLLM_MODEL": "standin"}
    env.pop("TTA_REDIS_URL", None)
    try:
        with tta_serve(port, env, tmp / "serve.log") as url:
            yield {"url": url, "key": key}
    finally:
        mllm.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Chromium is missing: run `bash scripts/install_system.sh` (as root)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=DriverService(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def open_page(browser: webdriver.Chrome, server: dict[str, str]) -> None:
    browser.get(server["url"] + "/")
    key = browser.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(server["key"])
    key.send_keys(Keys.TAB)  # change event: the page reloads the methods with the key
    # Ready: the methods were loaded with this key (the page reloads them when the key changes).
    wait(browser, lambda b: b.execute_script("return document.body.dataset.ready === 'true'"), "page ready")
    assert "rlcf" in browser.find_element(By.ID, "method").text.split("\n")  # served


def wait(browser: webdriver.Chrome, condition: Any, what: str, timeout_s: float = 60) -> Any:
    return WebDriverWait(browser, timeout_s, poll_frequency=0.05).until(condition, message=what)


def choose_demo_sample(browser: webdriver.Chrome) -> None:
    button = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#samples button[data-id=demo]"),
                  "the samples")[0]
    button.click()
    wait(browser, lambda b: "demo.png" in b.find_element(By.ID, "image-chosen").text, "sample chosen")


def screenshot_dir(tmp_path: Path) -> Path:
    return Path(os.environ.get("TTA_PLAYGROUND_SCREENSHOTS", tmp_path))


def card(browser: webdriver.Chrome, method: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f"#results article[data-method='{method}']")


def final_text(browser: webdriver.Chrome, method: str) -> str:
    parts = card(browser, method).find_elements(By.CSS_SELECTOR, "[data-part=final]")
    return str(parts[0].text) if parts else ""


def test_rlcf_run_shows_zeroshot_bars_then_steps_then_the_corrected_answer(browser, server):
    open_page(browser, server)
    browser.find_element(By.ID, "image-file").send_keys(str(DEMO))  # upload
    wait(browser, lambda b: "demo.png" in b.find_element(By.ID, "image-chosen").text, "image chosen")
    method = Select(browser.find_element(By.ID, "method")).first_selected_option
    assert method.get_attribute("value") == "rlcf"
    # The options form shows rlcf's defaults from /v1/methods.
    assert browser.find_element(By.ID, "opt-rlcf-steps").get_attribute("value") == "3"
    assert browser.find_element(By.ID, "opt-rlcf-lr").get_attribute("value") == "0.007"
    browser.execute_script(WATCH_ORDER)
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda b: "Answer" in final_text(b, "rlcf"), "the final answer")

    assert browser.execute_script("return window.__seen") == ["zeroshot", "step", "final"]
    rlcf = card(browser, "rlcf")
    zeroshot_bars = rlcf.find_elements(By.CSS_SELECTOR, "[data-part=zeroshot] li")
    assert len(zeroshot_bars) == 5  # top_k 5
    demo = MANIFEST["samples"][0]
    assert zeroshot_bars[0].text.startswith(demo["zeroshot"])  # the wrong zero-shot guess, "flower"
    assert len(rlcf.find_elements(By.CSS_SELECTOR, ".step-point")) == 3  # one per step
    assert "reward by step" in rlcf.find_element(By.CSS_SELECTOR, "[data-part=steps]").text
    final = final_text(browser, "rlcf")
    assert f"Answer: {demo['truth']}" in final  # rlcf fixes it, as measured when the demo was picked
    assert f"Changed: zero-shot said {demo['zeroshot']}" in final
    for metric in ("queue wait (ms)", "compute (ms)", "steps\n3", "reward_before", "reward_after"):
        assert metric in final
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None


def test_compare_mode_runs_each_method_side_by_side(browser, server, tmp_path):
    open_page(browser, server)
    choose_demo_sample(browser)
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=compare]").click()
    checked = [b.get_attribute("value")
               for b in browser.find_elements(By.CSS_SELECTOR, "#compare-methods input:checked")]
    # (mllm needs a label set)
    assert checked == ["zeroshot", "zero", "tda", "tpt", "rlcf", "rlcf-tune", "auto"]
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda b: all("Answer" in final_text(b, m) for m in checked), "seven answers")

    cards = browser.find_elements(By.CSS_SELECTOR, "#results article")
    assert [c.get_attribute("data-method") for c in cards] == checked
    assert len({c.location["y"] for c in cards[:2]}) == 1  # side by side at this width
    assert "Answer: flower" in final_text(browser, "zeroshot")
    assert "Answer: sun" in final_text(browser, "rlcf")
    assert not card(browser, "zeroshot").find_elements(By.CSS_SELECTOR, ".step-point")
    assert len(card(browser, "tpt").find_elements(By.CSS_SELECTOR, ".step-point")) == 1
    assert "entropy by step" in card(browser, "tpt").text
    auto = final_text(browser, "auto")  # which tier answered, and why it stopped there
    assert "tier" in auto and "settled_by" in auto
    assert browser.find_element(By.ID, "status").text == "Done."
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(screenshot_dir(tmp_path) / "playground-compare.png"))


def test_mllm_run_shows_each_candidates_p_true(browser, server):
    exemplars = {name: [base64.b64encode(encode(render("clean", label, 7).image, "PNG")).decode()]
                 for label, name in enumerate(CLASS_NAMES)}
    auth = {"Authorization": f"Bearer {server['key']}"}
    created = httpx.post(f"{server['url']}/v1/label-sets", headers=auth,
                         json={"name": "world", "labels": list(CLASS_NAMES), "exemplars": exemplars})
    assert created.status_code == 201, created.text
    open_page(browser, server)
    choose_demo_sample(browser)
    browser.find_element(By.CSS_SELECTOR, "input[name=label-source][value=label_set]").click()
    wait(browser, lambda b: "world (25 labels, 25 exemplars)" in b.find_element(By.ID, "label-set").text,
         "the label set listed")
    Select(browser.find_element(By.ID, "method")).select_by_value("mllm")
    assert browser.find_element(By.ID, "opt-mllm-n_candidates").get_attribute("value") == "6"
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda b: "Answer" in final_text(b, "mllm"), "the final answer")

    scored = card(browser, "mllm").find_elements(By.CSS_SELECTOR, "[data-part=candidates] li")
    assert scored[0].text.startswith("flower (gate)")  # the CLIP's top-1 is checked first
    assert len(scored) == 6 and any(li.text.startswith("sun (p_true)") for li in scored)
    rows = card(browser, "mllm").find_elements(By.CSS_SELECTOR, "table.candidates tr")[1:]
    by_label = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[2].text
                for r in rows}
    assert len(by_label) == 6 and by_label["sun"] == "0.8" and by_label["flower"] == "0.2"
    final = final_text(browser, "mllm")
    assert "Answer: sun" in final and "Changed: zero-shot said flower" in final
    assert "does not return which exemplar images" in final


def test_imagenet_preset_sends_its_1000_names(browser, server):
    open_page(browser, server)
    choose_demo_sample(browser)
    Select(browser.find_element(By.ID, "preset")).select_by_value("imagenet-1k")
    wait(browser, lambda b: b.find_element(By.ID, "labels-count").text == "1000 labels", "1000 labels")
    Select(browser.find_element(By.ID, "method")).select_by_value("zeroshot")
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda b: "Answer" in final_text(b, "zeroshot"), "the final answer")
    imagenet = json.loads((STATIC_DIR / "presets" / "imagenet-1k.json").read_text())["labels"]
    answer = card(browser, "zeroshot").find_element(By.CSS_SELECTOR, ".answer strong").text
    assert answer in imagenet


def test_no_labels_shows_the_apis_message_naming_the_field(browser, server):
    open_page(browser, server)
    browser.find_element(By.ID, "image-file").send_keys(str(DEMO))
    browser.find_element(By.CSS_SELECTOR, "input[name=label-source][value=text]").click()
    browser.find_element(By.ID, "run").click()
    error = wait(browser, lambda b: b.find_element(By.ID, "error").text, "the error box")
    # The same request straight to the API: the page shows its code, message and field.
    direct = httpx.post(f"{server['url']}/v1/jobs", headers={"Authorization": f"Bearer {server['key']}"},
                        json={"images": [], "method": "rlcf"})
    body = direct.json()
    assert direct.status_code == 422
    assert error == f"422 {body['code']}: {body['message']} (field: {body['field']})"
    assert body["field"] == "labels"


def test_wrong_key_shows_unauthorized(browser, server):
    browser.get(server["url"] + "/")
    browser.find_element(By.ID, "api-key").send_keys("not-a-key", Keys.TAB)
    error = wait(browser, lambda b: b.find_element(By.ID, "error").text, "the error box")
    assert error.startswith("401 unauthorized:")
    browser.execute_script("sessionStorage.clear(); localStorage.clear()")


def test_keyboard_labels_and_phone_width(browser, server):
    open_page(browser, server)
    unlabelled = browser.execute_script("""
      return [...document.querySelectorAll('input, select, textarea')].filter((c) =>
        !(c.labels && c.labels.length) && !c.getAttribute('aria-label')).map((c) => c.id || c.name);""")
    assert unlabelled == []
    # Keyboard only: focus the first sample, press Enter, and it becomes the chosen image.
    sample = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#samples button[data-id=demo]"),
                  "the samples")[0]
    browser.execute_script("arguments[0].focus()", sample)
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait(browser, lambda b: sample.get_attribute("aria-pressed") == "true", "sample pressed by keyboard")
    browser.set_window_size(375, 900)
    try:
        wait(browser, lambda b: b.execute_script("return window.innerWidth") <= 375, "narrow window")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0  # nothing wider than the phone: no sideways scrolling
    finally:
        browser.set_window_size(1280, 1000)


def test_screenshot_mid_adaptation(browser, server, tmp_path):
    """A long rlcf run (64 steps, 256 views) caught between steps. The browser's downloads are
    throttled (Chrome's network emulation) so the events arrive over seconds however fast the
    worker is: on a quiet machine the whole run took less than the screenshot."""
    open_page(browser, server)
    choose_demo_sample(browser)
    for option, value in (("steps", "64"), ("n_views", "256")):
        field = browser.find_element(By.ID, f"opt-rlcf-{option}")
        field.clear()
        field.send_keys(value)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": 4000, "uploadThroughput": -1})
    try:
        browser.find_element(By.ID, "run").click()
        wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".step-point")) >= 8, "8 steps", 120)
        browser.execute_script("window.scrollTo(0, 0)")
        target = screenshot_dir(tmp_path) / "playground.png"
        browser.save_screenshot(str(target))
        assert "Answer" not in final_text(browser, "rlcf")  # still mid-run after the screenshot
        assert target.stat().st_size > 10_000
        wait(browser, lambda b: "Answer" in final_text(b, "rlcf"), "the final answer", 120)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".step-point")) == 64
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
