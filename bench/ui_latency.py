"""UI latency benchmark: an arrow-key slider move until the chart is redrawn, in real Chromium.

Run ``python bench/ui_latency.py`` from the repository root (about 2-4 minutes on 2 cores).

Two Streamlit servers are started: this dashboard (``app.py``) and the trivial app
``../shared/baselines/floor_app.py`` (one slider, one small plotly chart: the cost any
Streamlit page pays for a slider move). Headless Chromium (``/usr/bin/chromium``, driven
by Playwright) opens the floor app and ``/pruning?model=<model>`` for each model.
``--model PATH`` times a model of your own as well (a file or a Hugging Face folder, e.g.
``bench/scale.py --save DIR``'s 135M-parameter Llama): the dashboard is started with its parent
folder as the server-side model folder (``COMPRESSION_LAB_MODELS``) and opens it from there.

One move: focus the slider (``.st-key-prune_amount`` on ours, ``.st-key-value`` on the
floor), press ArrowRight once (one step; on ours a new value every time, never a revisited
one, so the dashboard's cache of results by recipe never answers a timed move; the floor,
which caches nothing, turns back at the end of its range), and wait until the page is quiet
again. Measured in the page, with ``performance.now()``, the same way on both apps:

- start: the keydown event reaching the document (capture phase);
- chart redrawn (the headline figure): the last DOM mutation inside the chart's plotly div
  (``.st-key-prune_histogram`` on ours, ``.st-key-chart`` on the floor), seen by a
  MutationObserver on the whole document (Streamlit may replace the chart's element on a
  rerun; the old div's removal and the "stale" dimming do not count);
- first change: the first such mutation (the new figure starts to be drawn), for diagnosis;
- rerun done: the last websocket message the page receives for the move (the end of the
  script run, including everything drawn after the chart).

A move ends once the server has answered, the app's ``data-test-script-state`` is
``notRunning``, and neither the chart, the run state nor the websocket has changed for
``--quiet-ms``. (The run state alone is not enough: a fast rerun can go from running to
notRunning within one render, and then is never seen as running.) Websocket payload bytes
(received and sent, as Playwright reports the frames) are counted from the key press to
the end of the move.

After ``--warmup`` untimed moves per page, the timed blocks are interleaved: in each of
``--rounds`` rounds, for each model, a block of floor moves and a block of that model's moves
(the floor first in even rounds, second in odd ones), so that background load hits both
sides alike. Each model's ratio is median(model) / median(the floor moves of its rounds).
The last line is the summary: the chart-redrawn ratios and the median websocket bytes
received per move (KB = 1024 bytes), with the targets (≤ 1.3x the floor on simplenet,
≤ 2x on MiniLM, ≤ 200 KB per move; the line above it checks the bytes of the worst move).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
FLOOR_APP = ROOT.parent / "shared/baselines/floor_app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGETS = {"simplenet": 1.3, "minilm": 2.0}
SERVER_MODEL_TARGET = 2.0  # a model of your own, e.g. 135M parameters (issue 12)
BYTES_TARGET = 200 * 1024
SCREENSHOT_DIR = Path(tempfile.gettempdir())

# Added to every page before its scripts run: the time of each websocket message received,
# so that the end of a move does not hinge on seeing a short-lived "running" run state.
WS_HOOK_JS = """
(() => {
  const Native = window.WebSocket;
  window.__wsLast = null;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => {
        const now = performance.now();
        window.__wsLast = now;
        const b = window.__bench;
        if (b && b.t0 !== null) { b.wsLast = now; b.wsN += 1; b.lastChange = now; }
      });
    }
  };
})();
"""

# Installed before each move: records the keydown time and every change to the chart's plotly
# div. Streamlit may replace the chart's element (and the plotly div) on a rerun, so the whole
# document is observed and a mutation counts when it lands inside the chart's current plotly
# div, or inserts a node holding it; the old div's removal and the container's "stale"
# styling do not count.
ARM_JS = """
([chartSelector]) => {
  const app = document.querySelector('[data-test-script-state]');
  if (!app || !document.querySelector(chartSelector + ' .js-plotly-plot'))
    return 'missing ' + (!app ? 'app root' : chartSelector + ' .js-plotly-plot');
  if (window.__bench && window.__bench.stop) window.__bench.stop();
  const b = window.__bench = {t0: null, chartFirst: null, chartLast: null, chartN: 0, wsLast: null, wsN: 0, lastChange: null};
  const onKey = () => { if (b.t0 === null) { b.t0 = performance.now(); b.lastChange = b.t0; } };
  document.addEventListener('keydown', onKey, {capture: true});
  const observer = new MutationObserver((mutations) => {
    const now = performance.now();
    if (b.t0 === null) return;
    const plot = document.querySelector(chartSelector + ' .js-plotly-plot');
    if (mutations.some((m) => m.target === app)) b.lastChange = now;
    if (!plot) return;
    for (const m of mutations) {
      const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      const inside = el && el.isConnected && plot.contains(el);
      const inserted = !inside && [...m.addedNodes].some((n) => n === plot || n.contains(plot));
      if (inside || inserted) { if (b.chartFirst === null) b.chartFirst = now; b.chartLast = now; b.lastChange = now; b.chartN += 1; break; }
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  b.app = () => app.getAttribute('data-test-script-state');
  b.stop = () => { observer.disconnect(); document.removeEventListener('keydown', onKey, {capture: true}); };
  return 'ok';
}
"""

# A move is over once the server has answered (a websocket message after the key press), the
# app shows no run in progress, and nothing watched has changed for quietMs.
QUIET_JS = """
([quietMs]) => {
  const b = window.__bench;
  return !!b && b.t0 !== null && b.wsN > 0 && b.app() === 'notRunning'
    && performance.now() - b.lastChange >= quietMs;
}
"""


@dataclass
class Move:
    redraw_ms: float | None  # keydown → last chart mutation (None: the chart never changed)
    first_ms: float | None  # keydown → first chart mutation (the new figure starts to be drawn)
    done_ms: float  # keydown → the last websocket message of the move (the run's end)
    rx_bytes: int
    tx_bytes: int
    value: str


@dataclass
class Target:
    """One page under test: the floor app, or /pruning with one model."""

    name: str
    url: str
    slider: str  # selector of the widget's element container
    chart: str  # selector of the chart's element container
    page: object = None
    rx: int = 0
    tx: int = 0
    fresh: bool = True  # every move must reach a value never seen before (ours: results are cached)
    key: str = "ArrowRight"
    moves: list[Move] = field(default_factory=list)
    values: set[str] = field(default_factory=set)


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(script: Path, cwd: Path, log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    process = subprocess.Popen(command, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    return process, port


def wait_healthy(process: subprocess.Popen, port: int, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on port {port} not healthy after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the browser side --------------------------------------------------------------------------


def open_target(browser, target: Target, load_timeout_s: float) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(WS_HOOK_JS)
    page = context.new_page()
    target.page = page

    def on_websocket(ws) -> None:
        def received(payload) -> None:
            target.rx += len(payload)

        def sent(payload) -> None:
            target.tx += len(payload)

        ws.on("framereceived", received)
        ws.on("framesent", sent)

    page.on("websocket", on_websocket)
    started = time.monotonic()
    try:
        page.goto(target.url, timeout=load_timeout_s * 1000)
        page.wait_for_selector(f"{target.chart} .js-plotly-plot", timeout=load_timeout_s * 1000)
        page.wait_for_selector(f"{target.slider} input[type=range]", timeout=load_timeout_s * 1000)
        page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=load_timeout_s * 1000)
    except Exception:
        fail(target, "page did not load")
        raise
    print(f"  {target.name}: loaded in {time.monotonic() - started:.1f} s ({target.url})", flush=True)


def fail(target: Target, what: str) -> None:
    shot = SCREENSHOT_DIR / f"ui_latency_{target.name}.png"
    try:
        target.page.screenshot(path=str(shot), full_page=True)
        state = target.page.evaluate(
            "() => { const a = document.querySelector('[data-test-script-state]');"
            " return a ? a.getAttribute('data-test-script-state') : 'no app root'; }")
        print(f"  {target.name}: {what}; script state {state!r}; screenshot {shot}", file=sys.stderr, flush=True)
    except Exception as error:  # the page itself may be gone
        print(f"  {target.name}: {what}; no screenshot ({error})", file=sys.stderr, flush=True)


def one_move(target: Target, quiet_ms: int, timeout_s: float) -> Move:
    page = target.page
    slider = page.locator(f"{target.slider} input[type=range]")
    if not page.evaluate("(el) => document.activeElement === el", slider.element_handle()):
        slider.focus()
    before = slider.input_value()
    if not target.fresh:  # the floor turns back at the ends of its range
        low, high = (slider.get_attribute(name) for name in ("min", "max"))
        if float(before) >= float(high):
            target.key = "ArrowLeft"
        elif float(before) <= float(low):
            target.key = "ArrowRight"
    armed = page.evaluate(ARM_JS, [target.chart])
    if armed != "ok":
        fail(target, armed)
        raise RuntimeError(f"{target.name}: {armed}")
    target.rx = target.tx = 0
    page.keyboard.press(target.key)
    try:
        page.wait_for_function(QUIET_JS, arg=[quiet_ms], timeout=timeout_s * 1000, polling=50)
    except Exception:
        state = page.evaluate("() => { const b = window.__bench; return {t0: b.t0, chartN: b.chartN,"
                              " wsN: b.wsN, app: b.app()}; }")
        fail(target, f"move from {before} not finished after {timeout_s:.0f} s ({state})")
        raise
    b = page.evaluate("() => { const b = window.__bench; b.stop();"
                      " return {t0: b.t0, chartFirst: b.chartFirst, chartLast: b.chartLast, chartN: b.chartN, wsLast: b.wsLast}; }")
    value = slider.input_value()
    if value == before or (target.fresh and value in target.values):
        fail(target, f"the move from {before} gave {value}, not a new value")
        raise RuntimeError(f"{target.name}: the move from {before} gave {value}, not a new value")
    target.values.update((before, value))
    redraw = b["chartLast"] - b["t0"] if b["chartN"] else None
    first = b["chartFirst"] - b["t0"] if b["chartN"] else None
    return Move(redraw, first, b["wsLast"] - b["t0"], target.rx, target.tx, value)


def run_block(target: Target, count: int, quiet_ms: int, timeout_s: float, keep: bool) -> None:
    target.page.bring_to_front()
    for _ in range(count):
        move = one_move(target, quiet_ms, timeout_s)
        if keep:
            target.moves.append(move)


# --- numbers -------------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def redraw_times(moves: list[Move]) -> list[float]:
    return [m.redraw_ms if m.redraw_ms is not None else m.done_ms for m in moves]


def kb(count: float) -> str:
    return f"{count / 1024:.0f} KB" if count >= 1024 else f"{count:.0f} B"


def describe(name: str, moves: list[Move]) -> str:
    redraw = redraw_times(moves)
    done = [m.done_ms for m in moves]
    first = [m.first_ms for m in moves if m.first_ms is not None]
    rx = [m.rx_bytes for m in moves]
    tx = [m.tx_bytes for m in moves]
    missing = sum(m.redraw_ms is None for m in moves)
    note = f"  ({missing} moves without a chart change: their rerun-done time is used)" if missing else ""
    return (f"{name:<10} {len(moves):>3} moves  redraw median {statistics.median(redraw):7.0f} ms  "
            f"p90 {p90(redraw):7.0f} ms (first change {statistics.median(first) if first else float('nan'):4.0f})"
            f"  | rerun done median {statistics.median(done):7.0f} ms  "
            f"| ws received median {kb(statistics.median(rx))}, max {kb(max(rx))}; "
            f"sent median {kb(statistics.median(tx))}{note}")


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="simplenet,minilm",
                        help="comma-separated sample models (default: simplenet,minilm; '' for none)")
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help="a model file or Hugging Face folder to time as well (repeatable), opened from the "
                             "server-side model folder: COMPRESSION_LAB_MODELS is set to its parent folder; "
                             f"target <= {SERVER_MODEL_TARGET}x")
    parser.add_argument("--moves", type=int, default=15, help="timed moves per model (default 15)")
    parser.add_argument("--minilm-moves", type=int, default=9,
                        help="timed moves on MiniLM, whose full rerun is slower (default 9; 0: as --moves)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed moves per page first (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved floor/model rounds (default 3)")
    parser.add_argument("--quiet-ms", type=int, default=400, help="a move ends after this long without change")
    parser.add_argument("--move-timeout", type=float, default=120.0, help="seconds allowed per move (default 120)")
    parser.add_argument("--load-timeout", type=float, default=180.0, help="seconds allowed per page load")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    folders = {path.resolve().parent for path in args.model}
    if len(folders) > 1:
        parser.error("every --model must lie in the same folder (it becomes the server's model folder)")
    server_env = {"COMPRESSION_LAB_MODELS": str(folders.pop())} if folders else {}
    for path in args.model:
        models.append(f"server/{path.name}")
        TARGETS[models[-1]] = SERVER_MODEL_TARGET
    moves = {m: args.minilm_moves if m == "minilm" and args.minilm_moves else args.moves for m in models}
    if any(args.warmup + n > 100 for n in moves.values()):  # the amount slider: 0.00 to 1.00, step 0.01
        parser.error("--warmup plus the moves of one model must be at most 100 (each move needs a new amount)")
    if min(moves.values(), default=0) < args.rounds or args.rounds < 1:
        parser.error("each model needs at least one timed move per round")
    if not FLOOR_APP.exists():
        sys.exit(f"floor app not found: {FLOOR_APP}")

    from playwright.sync_api import sync_playwright

    logs = Path(tempfile.mkdtemp(prefix="ui_latency_"))
    servers = []
    started = time.monotonic()
    try:
        floor_server, floor_port = start_server(FLOOR_APP, FLOOR_APP.parent, logs / "floor.log")
        servers.append(floor_server)
        ours_server, ours_port = start_server(ROOT / "app.py", ROOT, logs / "ours.log", server_env)
        servers.append(ours_server)
        wait_healthy(floor_server, floor_port, logs / "floor.log")
        wait_healthy(ours_server, ours_port, logs / "ours.log")
        print(f"servers up (logs in {logs})", flush=True)

        floor = Target("floor", f"http://127.0.0.1:{floor_port}/", ".st-key-value", ".st-key-chart", fresh=False)
        targets = {m: Target(m, f"http://127.0.0.1:{ours_port}/pruning?model={quote(m, safe='')}", ".st-key-prune_amount",
                             ".st-key-prune_histogram") for m in models}
        floor_by_model: dict[str, list[Move]] = {m: [] for m in models}

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for target in [floor, *targets.values()]:
                    open_target(browser, target, args.load_timeout)
                for target in [floor, *targets.values()]:
                    run_block(target, args.warmup, args.quiet_ms, args.move_timeout, keep=False)
                print(f"warmed up ({args.warmup} moves per page); timing...", flush=True)
                counts = {m: split(moves[m], args.rounds) for m in models}
                for round_index in range(args.rounds):
                    for m in models:
                        n = counts[m][round_index]
                        if not n:
                            continue
                        before = len(floor.moves)
                        # floor first in even rounds, the model first in odd ones: neither side
                        # always runs just after the other's heavier work
                        order = [floor, targets[m]] if round_index % 2 == 0 else [targets[m], floor]
                        for target in order:
                            run_block(target, n, args.quiet_ms, args.move_timeout, keep=True)
                        floor_by_model[m].extend(floor.moves[before:])
                    print(f"  round {round_index + 1}/{args.rounds} done "
                          f"({time.monotonic() - started:.0f} s)", flush=True)
            finally:
                browser.close()
    finally:
        for server in servers:
            stop_server(server)

    print()
    print(describe("floor", floor.moves))
    for m in models:
        print(describe(m, targets[m].moves))
    print()
    ratios, summary_bytes = {}, {}
    for m in models:
        ours = statistics.median(redraw_times(targets[m].moves))
        base = statistics.median(redraw_times(floor_by_model[m]))
        done_ratio = (statistics.median(mv.done_ms for mv in targets[m].moves)
                      / statistics.median(mv.done_ms for mv in floor_by_model[m]))
        ratios[m] = ours / base
        summary_bytes[m] = statistics.median(mv.rx_bytes for mv in targets[m].moves)
        worst = max(mv.rx_bytes for mv in targets[m].moves)
        target = TARGETS.get(m)
        verdict = "" if target is None else (" (meets" if ratios[m] <= target else " (misses") + f" {target}x)"
        print(f"{m}: redraw {ours:.0f} ms vs floor {base:.0f} ms (same rounds) = {ratios[m]:.2f}x{verdict}; "
              f"rerun done {done_ratio:.2f}x; ws bytes per move median {kb(summary_bytes[m])}, max {kb(worst)}"
              f" ({'meets' if worst <= BYTES_TARGET else 'misses'} {kb(BYTES_TARGET)})")
    print(f"total {time.monotonic() - started:.0f} s")
    print("latency vs floor: " + ", ".join(f"{m} {ratios[m]:.2f}x" for m in models)
          + "; websocket bytes per move: " + ", ".join(f"{m} {kb(summary_bytes[m])}" for m in models)
          + " (targets " + ", ".join(f"{TARGETS[m]}x" for m in models if m in TARGETS) + f", {kb(BYTES_TARGET)})")


if __name__ == "__main__":
    main()
