"""Browser tests: the real app under uvicorn on a free port, a local SMTP server catching the
e-mails, and Debian's headless Chromium driven by Playwright (never `playwright install`).

Without /usr/bin/chromium the tests skip with a message, unless CI is set: then they fail, so a
CI machine that lost its browser cannot pass in silence. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from lethe import auth
from lethe.app import create_app
from lethe.settings import Settings
from records.db import unit_of_work, utc_now
from tests.integration.test_notifier import Mailbox, body, mailbox

__all__ = ["mailbox"]  # the SMTP fixture, re-exported for pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _need_browser() -> None:
    missing = [
        what
        for what, ok in (
            ("/usr/bin/chromium (apt-get install chromium)", CHROMIUM.exists()),
            ("playwright (pip)", importlib.util.find_spec("playwright") is not None),
            ("axe-playwright-python (pip)", _axe_path() is not None),
        )
        if not ok
    ]
    if missing:
        message = "browser tests need " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: .ci/run installs them)")
        pytest.skip(message)


def _axe_path() -> Path | None:
    spec = importlib.util.find_spec("axe_playwright_python")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "axe.min.js"
    return path if path.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Live:
    url: str
    app: FastAPI
    settings: Settings
    mailbox: Mailbox

    def key(self, role: str) -> str:
        with unit_of_work(self.app.state.engine) as s:
            _, key = auth.create_key(s, role=role, name=f"browser-{role}", now=utc_now())
        return key

    def wait_for_mail(self, request_id: str, pattern: str, timeout: float = 10.0) -> str:
        """The first group of `pattern` in an e-mail about `request_id`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.mailbox.messages):
                if message["X-Lethe-Request"] != request_id:
                    continue
                found = re.search(pattern, body(message))
                if found:
                    return found.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no e-mail matching {pattern!r} arrived")


@pytest.fixture
def live(settings: Settings, mailbox: Mailbox) -> Iterator[Live]:
    _need_browser()
    port = _free_port()
    configured = settings.model_copy(
        update={
            "smtp_host": mailbox.host,
            "smtp_port": mailbox.port,
            "smtp_from": "dpo@lethe.test",
            "public_base_url": f"http://127.0.0.1:{port}",
            "purge_anomaly_floor": 1,  # the first real run pauses for the DPO
            "log_level": "WARNING",
        }
    )
    app = create_app(configured)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield Live(url=f"http://127.0.0.1:{port}", app=app, settings=configured, mailbox=mailbox)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# Per module: Playwright's sync API keeps an event loop on the main thread while it lives, which
# later tests (asyncio.run, aiosmtpd) must not meet.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


class Pages:
    """Screenshots and accessibility checks of the pages a story visits."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.axe = (_axe_path() or Path("/nonexistent")).read_text()
        self.count = 0

    def look(self, page: Any, name: str) -> None:
        """Save a full-page screenshot and fail on any serious or critical axe violation."""
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)
        page.evaluate(self.axe)
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v.get("impact") in ("serious", "critical")
        ]
        assert bad == [], f"{name}: accessibility violations: {bad}"


@pytest.fixture
def pages(artifacts: Path) -> Pages:
    return Pages(artifacts)
