"""The Error X-ray page in a real browser on MiniLM: run it, read the chart, try a what-if.

Screenshots go to the run's screenshot folder (and /tmp/xray.png, /tmp/xray-what-if.png, /tmp/xray-detail.png) to be
looked at: 36 named layers down the page, two panels, lossless layers marked apart.
"""
from __future__ import annotations

import json
import shutil
import urllib.parse

from tests.e2e.test_browser import (  # noqa: F401 - chromium_path and patient_expectations are fixtures
    assert_no_error_on_page,
    chromium_path,
    open_page,
    patient_expectations,
    wait_for_app,
)

RECIPE = {"prune": {"method": "magnitude", "amount": 0.5, "scope": "layer"},
          "quantize": {"scheme": "linear", "bits": 4, "granularity": "per_channel"}}
LOAD_MS = 180_000  # MiniLM loads, then compresses and records on a busy machine
CHART = ".st-key-xray_depth .js-plotly-plot"


def test_xray_of_minilm_draws_every_layer_and_redraws_for_a_what_if(page, app_url, screenshot_dir):
    recipe = urllib.parse.quote(json.dumps(RECIPE, separators=(",", ":")), safe="")
    page.set_viewport_size({"width": 1400, "height": 1300})
    open_page(page, app_url, f"xray?model=minilm&recipe={recipe}", ".st-key-xray_run")
    page.locator(".st-key-xray_run button").click()
    page.wait_for_selector(CHART, timeout=LOAD_MS)
    wait_for_app(page)
    assert_no_error_on_page(page)
    ticks = page.locator(f"{CHART} .yaxislayer-above .ytick text").all_text_contents()
    assert len(ticks) == 36 and "layer.0.attention.self.query" in ticks
    page.locator(".st-key-xray_depth").scroll_into_view_if_needed()
    page.screenshot(path=screenshot_dir / "xray.png", full_page=True)
    shutil.copy(screenshot_dir / "xray.png", "/tmp/xray.png")

    page.locator(".st-key-xray_keep_float button").click()
    page.wait_for_selector(f"{CHART} .legendtext:text('local, recipe as is')", timeout=LOAD_MS)
    wait_for_app(page)
    assert_no_error_on_page(page)
    page.screenshot(path=screenshot_dir / "xray-what-if.png", full_page=True)
    shutil.copy(screenshot_dir / "xray-what-if.png", "/tmp/xray-what-if.png")
    page.locator(".st-key-xray_weight_ranges").scroll_into_view_if_needed()
    page.screenshot(path=screenshot_dir / "xray-detail.png")
    shutil.copy(screenshot_dir / "xray-detail.png", "/tmp/xray-detail.png")
