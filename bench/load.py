"""Load benchmark: many browser sessions moving sliders at once on one model, in real Chromium.

Run ``python bench/load.py`` from the repository root (about 2.5 minutes on 2 cores with the
defaults), or ``--url http://host:port [--pid PID]`` against a running dashboard.

One server (``streamlit run app.py``) and one headless Chromium (``/usr/bin/chromium``, driven
by Playwright's async API), with ``--sessions`` browser contexts (default 20): twenty
Streamlit sessions on the same model (``--model``, default simplenet), hence the same cached
base model. Each session drives its own slider from its own starting point, so that the
sessions ask for different recipes: in turn the pruning amount with global scope, the pruning
amount per layer, the threshold θ, and the quantization bits (each with its own granularity
and symmetry). A session presses its arrow key, waits until its page is quiet, and presses
again, until ``--seconds`` have passed; at either end of its range it turns back. The pages
open four at a time (opening one is the browser's heaviest work); all are held to the end.

Each move is measured in the page exactly as ``bench/ui_latency.py`` measures one (its
scripts are imported from there): from the keydown event to the last DOM mutation inside the
session's chart (``prune_histogram`` or ``quantize_histogram``), and to the last websocket
message of the rerun; a move ends once the app is idle and the page has been quiet for
``--quiet-ms``. The server's answer is also timed where the browser's network layer stamps
the websocket frames (Chrome DevTools Protocol): first frame sent to last frame received,
free of the wait for a busy page to draw. Before the others open, the first session times
``--single-moves`` moves alone: the single-session figures of the same run.

Printed: sessions held (connected at the end), moves done, p50/p95/max of the redraw time
under load, the server's answer p50/p95, the single-session p50 and the ratio, the CPU time
the server and the browser used during the load (on one machine the twenty pages' drawing
competes with the server: on 2 cores the browser takes most of it, so the ratio says more
about the machine than about the server), the server's peak resident memory (``VmHWM`` from
/proc) and its resident memory before and after the load, and the error elements
(``stException``, error alerts) any page showed at any moment (counted by a MutationObserver
in each page; it must be 0). The last line is the summary; the exit status is 1 when an error
element was seen, a move timed out or was not taken, or a session was lost.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ui_latency import (  # bench/ is the script's folder, hence on sys.path
    ARM_JS, CHROMIUM, CHROMIUM_ARGS, QUIET_JS, ROOT, WS_HOOK_JS, Move, kb, redraw_times, start_server, stop_server,
    wait_healthy,
)

ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
# Added to every page before its scripts run: the most error elements the page has shown at
# once, at any moment (an error drawn and then replaced by a later rerun still counts).
ERROR_WATCH_JS = """
(() => {
  window.__errorsSeen = 0;
  new MutationObserver(() => {
    const shown = document.querySelectorAll('%s').length;
    if (shown > window.__errorsSeen) window.__errorsSeen = shown;
  }).observe(document, {subtree: true, childList: true});
})();
""" % ERRORS
STOP_JS = """() => { const b = window.__bench; b.stop();
  return {t0: b.t0, chartFirst: b.chartFirst, chartLast: b.chartLast, chartN: b.chartN, wsLast: b.wsLast}; }"""
IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
OPENING_AT_ONCE = 4  # opening a page is the browser's heaviest work; twenty at once thrash two cores
VIEWPORT = {"width": 900, "height": 700}
QUANTIZE_VARIANTS = [("per_channel", True), ("per_tensor", True), ("per_channel", False), ("per_tensor", False)]


@dataclass
class Session:
    """One browser context on one page, moving one slider."""

    name: str
    path: str  # URL path and query: the page with the session's own starting recipe
    slider: str  # selector of the slider's element container
    chart: str  # selector of the chart whose redraw ends a move
    page: object = None
    key: str = "ArrowRight"
    rx: int = 0
    tx: int = 0
    moves: list[Move] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)  # per move: first frame sent → last frame received, ms
    frames: list[tuple[str, float]] = field(default_factory=list)  # ("sent" | "received", seconds), from CDP
    timeouts: int = 0
    failures: list[str] = field(default_factory=list)  # moves the page did not take (the slider stayed put)


def link(page: str, model: str, recipe: dict) -> str:
    return f"{page}?" + urllib.parse.urlencode({"model": model, "recipe": json.dumps(recipe, separators=(",", ":"))})


def sessions_for(model: str, count: int, weight_limit: float) -> list[Session]:
    """``count`` sessions, four kinds in turn, each kind's sessions spread over its range.

    The first session (amount, global, from 0) is the one timed alone as well.
    """
    per_kind = math.ceil(count / 4)
    sessions = []
    for index in range(count):
        kind, rank = index % 4, index // 4
        spread = rank / per_kind  # 0 ≤ spread < 1: where in its range this session starts
        if kind == 0:
            amount = 0.0 if rank == 0 else round(0.25 + 0.7 * spread, 2)
            recipe = {"prune": {"method": "magnitude", "amount": amount, "scope": "global"}}
            sessions.append(Session(f"amount-global-{amount:.2f}", link("pruning", model, recipe),
                                    ".st-key-prune_amount", ".st-key-prune_histogram"))
        elif kind == 1:
            amount = round(0.05 + 0.9 * spread, 2)
            recipe = {"prune": {"method": "magnitude", "amount": amount, "scope": "layer"}}
            sessions.append(Session(f"amount-layer-{amount:.2f}", link("pruning", model, recipe),
                                    ".st-key-prune_amount", ".st-key-prune_histogram"))
        elif kind == 2:
            threshold = float(f"{weight_limit * (0.02 + 0.5 * spread):.4g}")
            recipe = {"prune": {"method": "magnitude", "threshold": threshold, "scope": "global"}}
            sessions.append(Session(f"threshold-{threshold:.4g}", link("pruning", model, recipe),
                                    ".st-key-prune_threshold", ".st-key-prune_histogram"))
        else:
            granularity, symmetric = QUANTIZE_VARIANTS[rank % len(QUANTIZE_VARIANTS)]
            bits = 2 + (5 * rank) % 13
            recipe = {"quantize": {"scheme": "linear", "bits": bits, "granularity": granularity, "symmetric": symmetric}}
            sessions.append(Session(f"bits-{bits}-{granularity}-{'sym' if symmetric else 'asym'}",
                                    link("quantization", model, recipe), ".st-key-quantize_bits", ".st-key-quantize_histogram"))
    return sessions


# --- the browser side ----------------------------------------------------------------------------


async def open_session(browser, session: Session, url: str, timeout_s: float) -> None:
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(WS_HOOK_JS)
    await context.add_init_script(ERROR_WATCH_JS)
    page = await context.new_page()
    session.page = page

    def on_websocket(ws) -> None:
        def received(payload) -> None:
            session.rx += len(payload)

        def sent(payload) -> None:
            session.tx += len(payload)

        ws.on("framereceived", received)
        ws.on("framesent", sent)

    page.on("websocket", on_websocket)
    # The browser's network service stamps each websocket frame as it passes: the server's
    # answer time, free of the wait for the page's busy main thread that the redraw includes.
    devtools = await context.new_cdp_session(page)

    def frame(direction: str):
        def record(event: dict) -> None:
            if event["response"]["opcode"] in (1, 2):  # text or binary data, not pings
                session.frames.append((direction, event["timestamp"]))
        return record

    devtools.on("Network.webSocketFrameSent", frame("sent"))
    devtools.on("Network.webSocketFrameReceived", frame("received"))
    await devtools.send("Network.enable")
    await page.goto(f"{url}/{session.path}", timeout=timeout_s * 1000)
    for selector in (f"{session.chart} .js-plotly-plot", f"{session.slider} input[type=range]", IDLE):
        await page.wait_for_selector(selector, timeout=timeout_s * 1000)


async def one_move(session: Session, quiet_ms: int, timeout_s: float) -> Move:
    """One arrow-key press, timed in the page as ``ui_latency.one_move`` times it."""
    page = session.page
    slider = page.locator(f"{session.slider} input[type=range]")
    if not await slider.evaluate("(el) => document.activeElement === el"):
        await slider.focus()
    before = await slider.input_value()
    low, high = [float(await slider.get_attribute(name)) for name in ("min", "max")]
    if float(before) >= high:
        session.key = "ArrowLeft"
    elif float(before) <= low:
        session.key = "ArrowRight"
    armed = await page.evaluate(ARM_JS, [session.chart])
    if armed != "ok":
        raise RuntimeError(f"{session.name}: {armed}")
    session.rx = session.tx = 0
    mark = len(session.frames)
    await page.keyboard.press(session.key)
    # Polled every 100 ms: when Python notices the end does not change the times measured in
    # the page, only when the next move starts.
    await page.wait_for_function(QUIET_JS, arg=[quiet_ms], timeout=timeout_s * 1000, polling=100)
    b = await page.evaluate(STOP_JS)
    value = await slider.input_value()
    if value == before:
        raise RuntimeError(f"{session.name}: the move from {before} did not change the slider")
    frames = session.frames[mark:]
    sent = [stamp for direction, stamp in frames if direction == "sent"]
    received = [stamp for direction, stamp in frames if direction == "received"]
    if sent and received and max(received) > sent[0]:
        session.answers.append((max(received) - sent[0]) * 1000)
    redraw = b["chartLast"] - b["t0"] if b["chartN"] else None
    first = b["chartFirst"] - b["t0"] if b["chartN"] else None
    return Move(redraw, first, b["wsLast"] - b["t0"], session.rx, session.tx, value)


async def keep_moving(session: Session, deadline: float, quiet_ms: int, timeout_s: float) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    while time.monotonic() < deadline:
        try:
            session.moves.append(await one_move(session, quiet_ms, timeout_s))
        except PlaywrightTimeout:
            session.timeouts += 1
        except RuntimeError as failure:
            session.failures.append(str(failure))


# --- memory and CPU time ------------------------------------------------------------------------------


def memory_mib(pid: int | None, field_name: str) -> float | None:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of process ``pid``, in MiB."""
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pids: set[int]) -> float:
    """User and system CPU time of the processes ``pids`` (those still running), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def browser_pids(server: int | None) -> set[int]:
    """This process's descendants but the server: Playwright's driver and Chromium's processes."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            if child != server and child not in found:
                found.add(child)
                todo.append(child)
    return found


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- the run ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, url: str, pid: int | None, weight_limit: float) -> int:
    from playwright.async_api import async_playwright

    sessions = sessions_for(args.model, args.sessions, weight_limit)
    started = time.monotonic()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            alone = sessions[0]
            await open_session(browser, alone, url, args.load_timeout)
            for _ in range(args.warmup):
                await one_move(alone, args.quiet_ms, args.move_timeout)
            for _ in range(args.single_moves):
                alone.moves.append(await one_move(alone, args.quiet_ms, args.move_timeout))
            single, single_answers = list(alone.moves), list(alone.answers)
            alone.moves.clear()
            alone.answers.clear()
            print(f"single session: {len(single)} moves, redraw p50 {statistics.median(redraw_times(single)):.0f} ms "
                  f"({time.monotonic() - started:.0f} s)", flush=True)

            opening = asyncio.Semaphore(OPENING_AT_ONCE)

            async def open_one(session: Session) -> None:
                async with opening:
                    await open_session(browser, session, url, args.load_timeout)

            await asyncio.gather(*(open_one(session) for session in sessions[1:]))
            print(f"{len(sessions)} sessions open ({time.monotonic() - started:.0f} s); "
                  f"each moves its slider for {args.seconds:.0f} s...", flush=True)
            rss_before = memory_mib(pid, "VmRSS")
            browser_processes = browser_pids(pid)
            cpu_before = (cpu_seconds({pid} if pid else set()), cpu_seconds(browser_processes))
            load_started = time.monotonic()
            deadline = load_started + args.seconds
            await asyncio.gather(*(keep_moving(s, deadline, args.quiet_ms, args.move_timeout) for s in sessions))
            load_seconds = time.monotonic() - load_started
            server_cpu = cpu_seconds({pid} if pid else set()) - cpu_before[0]
            browser_cpu = cpu_seconds(browser_processes) - cpu_before[1]

            held = sum(await asyncio.gather(*(s.page.locator(IDLE).count() for s in sessions)))
            errors_seen = sum(await asyncio.gather(*(s.page.evaluate("() => window.__errorsSeen") for s in sessions)))
            errors_now = sum(await asyncio.gather(*(s.page.locator(ERRORS).count() for s in sessions)))
        finally:
            await browser.close()

    rss_after, peak = memory_mib(pid, "VmRSS"), memory_mib(pid, "VmHWM")
    moves = [move for session in sessions for move in session.moves]
    answers = [answer for session in sessions for answer in session.answers] or [math.nan]
    single_answers = single_answers or [math.nan]
    timeouts = sum(session.timeouts for session in sessions)
    failures = [failure for session in sessions for failure in session.failures]
    if not moves:
        print("no move finished under load", file=sys.stderr)
        return 1
    loaded = redraw_times(moves)
    single_p50 = statistics.median(redraw_times(single))
    loaded_p50 = statistics.median(loaded)
    done = [move.done_ms for move in moves]
    print()
    for kind in ("amount-global", "amount-layer", "threshold", "bits"):
        of_kind = [m for s in sessions if s.name.startswith(kind) for m in s.moves]
        if of_kind:
            times = redraw_times(of_kind)
            print(f"  {kind:<14} {len(of_kind):>4} moves  redraw p50 {statistics.median(times):6.0f} ms  "
                  f"p95 {percentile(times, 0.95):6.0f} ms")
    print(f"sessions held: {held} of {len(sessions)} (connected at the end)")
    print(f"moves done: {len(moves)} in {load_seconds:.0f} s ({len(moves) / load_seconds:.1f}/s), {timeouts} timed out "
          f"(> {args.move_timeout:.0f} s), {len(failures)} not taken by the page"
          + (f" (first: {failures[0]})" if failures else ""))
    print(f"slider latency under load (keydown → chart redrawn): p50 {loaded_p50:.0f} ms, "
          f"p95 {percentile(loaded, 0.95):.0f} ms, max {max(loaded):.0f} ms; rerun done p50 {statistics.median(done):.0f} ms; "
          f"ws received per move median {kb(statistics.median(m.rx_bytes for m in moves))}")
    print(f"server answer under load (first frame sent → last frame received, at the browser's network layer): "
          f"p50 {statistics.median(answers):.0f} ms, p95 {percentile(answers, 0.95):.0f} ms; "
          f"alone {statistics.median(single_answers):.0f} ms")
    print(f"single session, same run: p50 {single_p50:.0f} ms ({len(single)} moves); "
          f"under load / alone = {loaded_p50 / single_p50:.2f}x")
    print(f"CPU during the load: server {server_cpu:.0f} s{'' if pid else ' (n/a without --pid)'}, browser "
          f"{browser_cpu:.0f} s, in {load_seconds:.0f} s of {os.cpu_count()} cores (the browser's pages share them)")
    print(f"server memory: peak (VmHWM) {mib(peak)}; resident before the load {mib(rss_before)}, after {mib(rss_after)}")
    print(f"error elements seen: {errors_seen} (on the pages at the end: {errors_now})")
    print(f"total {time.monotonic() - started:.0f} s")
    print(f"load: {held}/{len(sessions)} sessions held, {len(moves)} moves, slider p50 {loaded_p50:.0f} ms / "
          f"p95 {percentile(loaded, 0.95):.0f} ms under load vs {single_p50:.0f} ms alone ({loaded_p50 / single_p50:.2f}x), "
          f"server answer p50 {statistics.median(answers):.0f} ms, server peak RSS {mib(peak)}, {errors_seen} error elements")
    return 0 if errors_seen == 0 and timeouts == 0 and not failures and held == len(sessions) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="browser sessions at once (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the sessions move (default 60)")
    parser.add_argument("--model", default="simplenet", help="the sample model every session uses (default simplenet)")
    parser.add_argument("--single-moves", type=int, default=15, help="moves timed with one session alone first (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed moves before those (default 3)")
    parser.add_argument("--quiet-ms", type=int, default=400, help="a move ends after this long without change")
    parser.add_argument("--move-timeout", type=float, default=120.0, help="seconds allowed per move (default 120)")
    parser.add_argument("--load-timeout", type=float, default=180.0, help="seconds allowed per page load")
    parser.add_argument("--url", help="a running dashboard instead of starting one (its memory needs --pid)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    args = parser.parse_args()
    if args.sessions < 1 or args.seconds <= 0 or args.single_moves < 1:
        parser.error("--sessions and --single-moves must be at least 1, --seconds above 0")
    if args.warmup + args.single_moves > 100:  # the amount slider: 0.00 to 1.00, step 0.01; each move a new amount
        parser.error("--warmup plus --single-moves must be at most 100")

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import compression
    from compression.preview import MagnitudeIndex

    weight_limit = MagnitudeIndex.of(compression.load_model(args.model)).largest  # the θ slider's end

    if args.url:
        sys.exit(asyncio.run(run(args, args.url.rstrip("/"), args.pid, weight_limit)))
    log = Path(tempfile.mkdtemp(prefix="load_")) / "server.log"
    server, port = start_server(ROOT / "app.py", ROOT, log)
    try:
        wait_healthy(server, port, log)
        print(f"server up (log {log})", flush=True)
        status = asyncio.run(run(args, f"http://localhost:{port}", server.pid, weight_limit))
    finally:
        stop_server(server)
    sys.exit(status)


if __name__ == "__main__":
    main()
