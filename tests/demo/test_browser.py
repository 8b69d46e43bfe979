"""The demo end to end in a real browser (Debian's Chromium driven by Playwright): a tiny world model saved to a
temporary ``pretrained/`` folder and loaded by name, served on a free localhost port; the test starts a drive, holds
arrow keys, checks that frames arrive and that different actions give different frames, plays, reads the FPS the
page shows, records a GIF, sends bad input and takes a screenshot.

Skips with the reason when Chromium or Playwright is missing (``apt-get install chromium``; ``pip install
playwright``: never ``playwright install``, the system Chromium is used).
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest
import torch

CHROMIUM = os.environ.get("HMA_CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.slow

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="the browser test needs Playwright for Python: pip install playwright")
pytest.importorskip("starlette", reason="the demo server needs the demo extra: pip install -e '.[demo]'")
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and shutil.which("chromium") is None:
    pytest.skip(f"the browser test needs Chromium at {CHROMIUM} (apt-get install chromium, or set HMA_CHROMIUM)",
                allow_module_level=True)

from hma_zoo import pretrained  # noqa: E402
from hma_zoo.configs import EmbodimentSpec  # noqa: E402
from hma_zoo.demo.app import create_app, serve_in_thread  # noqa: E402
from hma_zoo.demo.session import DemoConfig, SessionManager  # noqa: E402
from hma_zoo.hub import save_pretrained  # noqa: E402
from tests.shipped_helpers import ship_tiny  # noqa: E402

NAME = "hma-vq-test.unit"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The demo on a free port, serving a random ``hma-vq-test`` (weights perturbed so that actions matter) that
    knows ``pusht`` (the built-in example prompt), loaded by name from a temporary shipped folder."""
    emb = EmbodimentSpec("pusht", action_dim=2, stride=1, action_mean=(250.0, 250.0), action_std=(120.0, 120.0))
    model = ship_tiny(tmp_path / "pretrained", monkeypatch, emb)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    save_pretrained(model, tmp_path / "pretrained" / NAME, meta={"variant": "hma-vq-test"})
    assert pretrained.bundled_tokenizer(NAME) is not None
    config = DemoConfig(default_model=NAME, max_sessions=2)
    manager = SessionManager(config)
    with serve_in_thread(create_app(config, manager)) as url:
        yield url, manager


def _launch(p):
    exe = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    return p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])


def _wait_frame(page, n: int) -> str:
    page.wait_for_function(f"document.getElementById('stepno').textContent === 'frame {n}'", timeout=20_000)
    return page.get_attribute("#pred", "src")


def _drive(page, key: str, frames: int = 3) -> str:
    """Reset, hold ``key`` for ``frames`` single steps; the last predicted frame (a data URL)."""
    page.click("#reset")
    _wait_frame(page, 0)
    page.keyboard.down(key)
    for i in range(1, frames + 1):
        page.click("#step")
        src = _wait_frame(page, i)
    page.keyboard.up(key)
    return src


def test_drive_a_world_model_in_the_browser(server, tmp_path) -> None:
    url, manager = server
    with playwright_api.sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto(url)
        page.wait_for_function(f"document.getElementById('model').value === '{NAME}' && "
                               "document.getElementById('embodiment').value === 'pusht'", timeout=20_000)
        page.click("#start")
        first = _wait_frame(page, 0)
        assert first.startswith("data:image/png;base64,")

        # different actions, different frames; the same actions, the same frames (greedy sampling, seed 0)
        left, right, left_again = _drive(page, "ArrowLeft"), _drive(page, "ArrowRight"), _drive(page, "ArrowLeft")
        assert left == left_again
        assert left != right
        assert page.inner_text("#action") != "–"

        # the policy head acts
        page.check("#mode-policy")
        page.click("#step")
        _wait_frame(page, 4)

        # play as fast as it goes: frames keep arriving and the page shows its frame rate
        page.check("input[name=mode][value=manual]")
        page.select_option("#rate", "max")
        page.click("#record")
        page.click("#play")
        page.wait_for_function("parseInt(document.getElementById('stepno').textContent.split(' ')[1]) >= 24",
                               timeout=60_000)
        page.click("#play")  # pause
        fps = page.inner_text("#fps")
        match = re.match(r"FPS (\d+\.\d)", fps)
        assert match and float(match.group(1)) > 0, fps
        assert re.match(r"latency \d+ ms", page.inner_text("#latency"))
        page.click("#record")  # stop recording
        page.wait_for_function("!document.getElementById('dl-gif').classList.contains('disabled')")
        gif = page.request.get(url + page.get_attribute("#dl-gif", "href"))
        assert gif.status == 200 and gif.body()[:6] == b"GIF89a"
        shot = page.screenshot(path=str(tmp_path / "demo.png"))
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000

        # bad input: a clear message in the page, and the server keeps serving
        page.fill("#model", "hma-vq-nope")
        page.press("#model", "Enter")  # commits the value: one change event
        page.wait_for_selector("#message:not([hidden])")
        assert "unknown model 'hma-vq-nope'" in page.inner_text("#message")
        page.fill("#model", NAME)
        page.press("#model", "Enter")
        page.wait_for_selector("#message", state="hidden")
        page.fill("#embodiment", "hopper")
        page.press("#embodiment", "Enter")
        page.click("#start")
        page.wait_for_function("document.getElementById('message').textContent.includes('unknown embodiment')")
        page.fill("#embodiment", "pusht")
        page.press("#embodiment", "Enter")
        page.click("#start")
        page.wait_for_selector("#message", state="hidden")
        browser.close()
    deadline = time.monotonic() + 10
    while manager.sessions and time.monotonic() < deadline:  # the tab is gone: its session is freed
        time.sleep(0.05)
    assert manager.sessions == {}
