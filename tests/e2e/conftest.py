"""A served dashboard and a headless Chromium, in the manner of Streamlit's own e2e suite.

The server is ``streamlit run app.py`` on a free port, started once per module; each test gets
a fresh browser context, hence a fresh Streamlit session. Screenshots go to one temporary
folder whose path is printed at the end of the run.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SERVER_START_SECONDS = 90
SCREENSHOTS = pytest.StashKey[Path]()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@dataclass(frozen=True)
class ServedApp:
    """A running ``streamlit run app.py``: its base URL, its process (for its memory: the
    process is the server itself, no shell between) and its log."""

    url: str
    process: subprocess.Popen
    log: Path

    def memory_kib(self, field: str = "VmRSS") -> int:
        """A memory figure of the server from /proc/<pid>/status, in KiB: ``VmRSS`` (resident
        now) or ``VmHWM`` (the peak resident size so far)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise KeyError(f"no {field} in /proc/{self.process.pid}/status")


@contextlib.contextmanager
def serve_app(log_path: Path) -> Iterator[ServedApp]:
    """Serve app.py from the repository root on a free port until the block ends."""
    port = _free_port()
    url = f"http://localhost:{port}"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py",
             "--server.port", str(port), "--server.headless", "true"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up on {url}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield ServedApp(url, server, log_path)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """The server for this module, with its process at hand (its memory, whether it is alive)."""
    with serve_app(tmp_path_factory.mktemp("streamlit") / "server.log") as served:
        yield served


@pytest.fixture(scope="module")
def app_url(served_app: ServedApp) -> str:
    """Base URL of ``streamlit run app.py``, served from the repository root for this module."""
    return served_app.url


@pytest.fixture(scope="module")
def browser(chromium_path: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A new browser context (a new Streamlit session) with one page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def screenshot_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    request.config.stash[SCREENSHOTS] = folder
    print(f"screenshots: {folder}")
    return folder


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    folder = config.stash.get(SCREENSHOTS, None)
    if folder is not None:
        terminalreporter.write_line(f"Dashboard screenshots: {folder}")
