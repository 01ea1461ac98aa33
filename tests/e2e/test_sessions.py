"""Many sessions on one server: each sees only its own results, the shared cached model is
never written to, memory stays within what the caches allow, and a reload or a page switch in
the middle of a long run leaves a working page.

Twenty browser contexts (twenty Streamlit sessions) of one headless Chromium are driven at
once with Playwright's async API: one browser, one event loop, ``asyncio.gather``. (The sync
API cannot be shared between threads, and twenty Playwright drivers do not fit two cores.)
Opening a page is the browser's heaviest work (about 2.5 s of its main thread per context on
the Pruning page: each context fetches and compiles the whole frontend anew), so the pages
open four at a time; the twenty sessions are all held, and they move their sliders at once.
Needs the ``playwright`` package and a Chromium at /usr/bin/chromium.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest

pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

import compression  # noqa: E402
from compression.model import weights_fingerprint  # noqa: E402
from e2e.conftest import CHROMIUM_ARGS, ServedApp, serve_app  # noqa: E402 (pytest imports tests/e2e as package "e2e")

MODEL = "mlp"
OTHER_MODEL = "simplenet"
SESSIONS = 20
# Session i ends at amount 0.02 + 0.05·i (0.02 … 0.97): twenty recipes, 5 points of sparsity
# apart, so no session's number can pass for another's. Each opens 0.02 below its own amount
# (set up by a link's recipe) and presses ArrowRight twice.
TARGETS = [round(0.02 + 0.05 * i, 2) for i in range(SESSIONS)]
KEY_PRESSES = 2
SLIDER_STEP = 0.01
TIMEOUT_MS = 120_000  # twenty sessions share two cores: a rerun may wait behind nineteen others
OPENING_AT_ONCE = 4  # all twenty at once take half as long again on two cores: they thrash
VIEWPORT = {"width": 900, "height": 700}  # a smaller page is quicker to draw; columns stay side by side

IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
PRUNING_READY = ".st-key-prune_histogram .js-plotly-plot"
AMOUNT_SLIDER = ".st-key-prune_amount input[type=range]"
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
PROGRESS = '[data-testid="stProgress"]'
FINGERPRINT = re.compile(r"Weights SHA-256: ([0-9a-f]{16})")
# Added to every page before its scripts run: the most error elements the page has shown at any
# moment, so that an error drawn and then replaced by a later rerun still counts.
ERROR_WATCH_JS = """(() => {
  window.__errorsSeen = 0;
  new MutationObserver(() => {
    window.__errorsSeen = Math.max(window.__errorsSeen, document.querySelectorAll('%s').length);
  }).observe(document, {subtree: true, childList: true});
})();""" % ERRORS

# Server memory. What the server keeps is bounded by the caches of ui/cache.py, however many
# sessions come: here one base model (mlp: 0.2 MB of weights), compressions within a byte budget
# (``ui.result_cache``; an mlp result, a copy of the module plus its report's view data, is about
# 0.5 MB, far below the budget, so every recipe of this test stays: each session opens at one
# amount and presses ArrowRight twice, three recipes) and at most 512 small metric dicts; a
# session itself keeps only its recipe and widget values (kilobytes). The rest is transient: up
# to twenty reruns at once, each with a compression, an evaluation and figures in flight, and
# glibc keeping freed heap in per-thread arenas (Streamlit runs each session's script on its
# own thread). So the peak (VmHWM) may exceed the resident size before the sessions came by the
# cached results three times over (copies made while compressing), 4 MiB per session in flight
# and 128 MiB of allocator slack: about 320 MiB (measured: 60-70 MiB on two cores).
RESULT_MIB = 0.6
CACHED_RESULTS = 3 * SESSIONS  # the recipes this test asks for, all kept within ui.cache.RESULT_BYTES
PER_SESSION_MIB = 4
ALLOCATOR_SLACK_MIB = 128
PEAK_GROWTH_BOUND_KIB = int((3 * CACHED_RESULTS * RESULT_MIB + SESSIONS * PER_SESSION_MIB + ALLOCATOR_SLACK_MIB) * 1024)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return CHROMIUM


# --- driving sessions ---------------------------------------------------------------------------


def pruning_link(amount: float) -> str:
    recipe = {"prune": {"method": "magnitude", "amount": amount, "scope": "global"}}
    return "pruning?" + urllib.parse.urlencode({"model": MODEL, "recipe": json.dumps(recipe, separators=(",", ":"))})


def sparsity_metric(page: Page):
    return page.get_by_test_id("stMetric").filter(has_text="Sparsity").get_by_test_id("stMetricValue")


async def new_page(browser: Browser) -> Page:
    """A new browser context, hence a new Streamlit session, with one page."""
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(ERROR_WATCH_JS)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


async def open_path(page: Page, app_url: str, path: str, ready: str) -> None:
    await page.goto(f"{app_url}/{path}")
    await page.wait_for_selector(ready)
    await page.wait_for_selector(IDLE)


async def shown_fingerprint(page: Page, app_url: str) -> str:
    """The weights fingerprint the Model page shows for the sample model."""
    await page.goto(f"{app_url}/model?model={MODEL}")
    caption = page.get_by_text(FINGERPRINT)
    await expect(caption).to_be_visible(timeout=TIMEOUT_MS)
    return FINGERPRINT.search(await caption.inner_text()).group(1)


async def error_count(page: Page) -> int:
    """The most error elements the page has shown at once since it was loaded, or shows now."""
    return max(await page.evaluate("() => window.__errorsSeen"), await page.locator(ERRORS).count())


async def open_below_own_amount(browser: Browser, app_url: str, target: float, opening: asyncio.Semaphore) -> Page:
    async with opening:
        page = await new_page(browser)
        await open_path(page, app_url, pruning_link(round(target - KEY_PRESSES * SLIDER_STEP, 2)), PRUNING_READY)
    return page


async def move_to_own_amount(page: Page, target: float) -> None:
    await page.locator(AMOUNT_SLIDER).focus()
    for _ in range(KEY_PRESSES):
        await page.keyboard.press("ArrowRight")
    await expect(page.locator(AMOUNT_SLIDER)).to_have_value(str(target), timeout=TIMEOUT_MS)
    await expect(sparsity_metric(page)).to_have_text(f"{target:.1%}", timeout=TIMEOUT_MS)
    await page.wait_for_selector(IDLE)


@dataclass
class SessionsOutcome:
    fingerprint_before: str
    fingerprint_after: str
    rss_before_kib: int
    rss_after_kib: int
    peak_kib: int
    sparsity: list[str]  # what each session shows once every session has moved
    slider: list[str]
    recipe_in_url: list[str]
    errors: list[int]  # the most error elements each session showed at once, the observer's last


async def drive_sessions(served: ServedApp) -> SessionsOutcome:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # One session loads the model and draws both pages first, so that "before" is the
            # server as the twenty find it, after its first imports and the model's load.
            observer = await new_page(browser)
            before = await shown_fingerprint(observer, served.url)
            await open_path(observer, served.url, pruning_link(0.0), PRUNING_READY)
            rss_before = served.memory_kib("VmRSS")
            opening = asyncio.Semaphore(OPENING_AT_ONCE)
            pages = await asyncio.gather(*(open_below_own_amount(browser, served.url, t, opening) for t in TARGETS))
            await asyncio.gather(*(move_to_own_amount(page, t) for page, t in zip(pages, TARGETS)))
            sparsity = await asyncio.gather(*(sparsity_metric(page).inner_text() for page in pages))
            slider = await asyncio.gather(*(page.locator(AMOUNT_SLIDER).input_value() for page in pages))
            recipe_in_url = [urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["recipe"][0] for page in pages]
            errors = await asyncio.gather(*(error_count(page) for page in pages))
            after = await shown_fingerprint(observer, served.url)
            errors.append(await error_count(observer))
            return SessionsOutcome(before, after, rss_before, served.memory_kib("VmRSS"), served.memory_kib("VmHWM"),
                                   sparsity, slider, recipe_in_url, errors)
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def sessions(served_app: ServedApp) -> SessionsOutcome:
    """Twenty sessions on /pruning of one model, each moving its own amount slider at once."""
    return asyncio.run(drive_sessions(served_app))


# --- twenty sessions at once --------------------------------------------------------------------


def test_each_of_twenty_concurrent_sessions_shows_its_own_sparsity(sessions):
    assert sessions.sparsity == [f"{t:.1%}" for t in TARGETS]
    assert sessions.slider == [str(t) for t in TARGETS]
    assert [json.loads(recipe)["prune"]["amount"] for recipe in sessions.recipe_in_url] == TARGETS


def test_no_session_shows_an_error_element(sessions):
    assert sessions.errors == [0] * (SESSIONS + 1)


def test_shared_base_model_weights_hash_the_same_before_and_after(sessions):
    assert sessions.fingerprint_after == sessions.fingerprint_before
    assert sessions.fingerprint_before == weights_fingerprint(compression.load_model(MODEL).module)  # the file's


def test_server_memory_stays_within_the_cache_bound(sessions):
    grown = sessions.peak_kib - sessions.rss_before_kib
    assert grown <= PEAK_GROWTH_BOUND_KIB, (
        f"peak RSS {sessions.peak_kib / 1024:.0f} MiB is {grown / 1024:.0f} MiB above the "
        f"{sessions.rss_before_kib / 1024:.0f} MiB before the sessions (bound {PEAK_GROWTH_BOUND_KIB / 1024:.0f} MiB; "
        f"{sessions.rss_after_kib / 1024:.0f} MiB after)")


# --- a reload or a page switch in the middle of a run -------------------------------------------

SWEEP_READY = ".st-key-sweep_amounts"
SWEEP_CHART = ".st-key-sweep_chart .js-plotly-plot"
GRADUAL_READY = ".st-key-agp_chart .js-plotly-plot"
GRADUAL_STEPS = 2  # a small schedule: 3 pruning steps, an epoch of fine-tuning after each


def server_alive(served: ServedApp) -> bool:
    try:
        with urllib.request.urlopen(f"{served.url}/_stcore/health", timeout=5) as reply:
            return served.process.poll() is None and reply.read().strip() == b"ok"
    except OSError:
        return False


async def assert_no_error(page: Page) -> None:
    assert await error_count(page) == 0, f"an error element on {page.url}"


async def go_to(page: Page, title: str, ready: str) -> None:
    """Switch pages the way a user does: the sidebar's link (same session)."""
    await page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    await expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()
    await page.wait_for_selector(ready)
    await page.wait_for_selector(IDLE)


async def start_sweep(page: Page) -> None:
    """Press "Run sweep" and return while its progress bar shows: the sweep is under way."""
    await page.get_by_role("button", name="Run sweep").click()
    await expect(page.locator(PROGRESS)).to_be_visible()


async def sweep_kept_or_ready_to_run(page: Page) -> None:
    """The interrupted sweep's result is there, or its progress (sweeps go on in the server's
    background for whoever comes back), or the page offers to run one."""
    offer = page.get_by_text("Choose the ranges and press")
    running = page.get_by_text(re.compile(r"^\d+ of \d+ points"))
    await expect(page.locator(SWEEP_CHART).or_(offer).or_(running).first).to_be_visible()
    await page.wait_for_selector(IDLE)
    await assert_no_error(page)


async def sweep_runs_to_the_end(page: Page) -> None:
    await page.get_by_role("button", name="Run sweep").click()
    await expect(page.locator(SWEEP_CHART)).to_be_visible(timeout=TIMEOUT_MS)
    await page.wait_for_selector(IDLE)
    await assert_no_error(page)


async def small_schedule(page: Page) -> None:
    steps = page.locator(".st-key-agp_steps input[type=range]")
    await steps.focus()
    await page.keyboard.press("Home")
    for _ in range(GRADUAL_STEPS - 1):
        await page.keyboard.press("ArrowRight")
    await expect(steps).to_have_value(str(GRADUAL_STEPS))
    await page.wait_for_selector(IDLE)


async def start_training(page: Page) -> None:
    await small_schedule(page)
    await page.get_by_role("button", name="Run gradual pruning").click()
    await expect(page.locator(PROGRESS)).to_be_visible()


async def training_kept_or_ready_to_run(page: Page) -> None:
    results = page.get_by_test_id("stDataFrame")
    offer = page.get_by_text("then press Run gradual pruning")
    await expect(results.first.or_(offer)).to_be_visible()
    await page.wait_for_selector(IDLE)
    await assert_no_error(page)


async def training_runs_to_the_end(page: Page) -> None:
    await small_schedule(page)
    await page.get_by_role("button", name="Run gradual pruning").click()
    await expect(page.get_by_test_id("stDataFrame")).to_have_count(2, timeout=TIMEOUT_MS)  # steps, comparison
    await page.wait_for_selector(IDLE)
    await assert_no_error(page)


async def reload_mid_sweep(page: Page, app_url: str) -> None:
    await open_path(page, app_url, f"tradeoffs?model={MODEL}", SWEEP_READY)
    await start_sweep(page)
    await page.reload()  # a new session: the sweep goes on in the server's background
    await page.wait_for_selector(SWEEP_READY)
    await sweep_kept_or_ready_to_run(page)
    await sweep_runs_to_the_end(page)


async def switch_pages_mid_sweep(page: Page, app_url: str) -> None:
    # Another model than reload_mid_sweep's: its grid, finished on this server, would not run again.
    await open_path(page, app_url, f"tradeoffs?model={OTHER_MODEL}", SWEEP_READY)
    await start_sweep(page)
    await go_to(page, "Pruning", PRUNING_READY)  # the sweep goes on in the server's background
    await assert_no_error(page)
    await go_to(page, "Trade-offs", SWEEP_READY)
    await sweep_kept_or_ready_to_run(page)
    await sweep_runs_to_the_end(page)


async def reload_mid_training(page: Page, app_url: str) -> None:
    await open_path(page, app_url, f"gradual?model={MODEL}", GRADUAL_READY)
    await start_training(page)
    await page.reload()
    await page.wait_for_selector(GRADUAL_READY)
    await training_kept_or_ready_to_run(page)
    await training_runs_to_the_end(page)


async def switch_pages_mid_training(page: Page, app_url: str) -> None:
    await open_path(page, app_url, f"gradual?model={MODEL}", GRADUAL_READY)
    await start_training(page)
    await go_to(page, "Model", '[data-testid="stDataFrame"]')
    await assert_no_error(page)
    await go_to(page, "Gradual pruning", GRADUAL_READY)
    await training_kept_or_ready_to_run(page)
    await training_runs_to_the_end(page)


async def in_one_session(served: ServedApp, scenario) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await scenario(await new_page(browser), served.url)
        finally:
            await browser.close()


@pytest.mark.parametrize(
    "scenario", [reload_mid_sweep, switch_pages_mid_sweep, reload_mid_training, switch_pages_mid_training],
    ids=lambda scenario: scenario.__name__.replace("_", "-"),
)
def test_run_interrupted_by_reload_or_page_switch_is_kept_or_cancelled_cleanly(served_app, scenario):
    """Afterwards the page shows the result or offers the run again, shows no error, and runs
    it to the end; the server is alive and has logged no traceback."""
    asyncio.run(in_one_session(served_app, scenario))
    assert server_alive(served_app)
    log = served_app.log.read_text()
    assert "Traceback" not in log, log[-3000:]


# --- the first visits to a fresh server -----------------------------------------------------------

FIRST_VISITORS = 4


async def first_visits(served: ServedApp) -> list[int]:
    """Error elements on each of several pages opened at once on a server nobody has visited."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = await asyncio.gather(*(new_page(browser) for _ in range(FIRST_VISITORS)))
            await asyncio.gather(*(page.goto(f"{served.url}/{pruning_link(0.1)}") for page in pages))

            async def settled(page: Page) -> int:
                await expect(page.locator(f"{PRUNING_READY}, {ERRORS}").first).to_be_visible(timeout=TIMEOUT_MS)
                await page.wait_for_selector(IDLE)
                return await error_count(page)

            return await asyncio.gather(*(settled(page) for page in pages))
        finally:
            await browser.close()


def test_pages_opened_at_once_on_a_fresh_server_each_get_the_app(tmp_path):
    with serve_app(tmp_path / "server.log") as served:
        errors = asyncio.run(first_visits(served))
    assert errors == [0] * FIRST_VISITORS
