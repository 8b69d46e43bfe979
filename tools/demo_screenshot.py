"""Drive the demo in Chromium with a shipped model, read the frame rate the page shows, save a screenshot.

    python tools/demo_screenshot.py                        # hma-vq-t64.simmix, dmc_cheetah + real simulator
    python tools/demo_screenshot.py --embodiment pusht --no-real --out /tmp/demo.png

Serves the demo on a free localhost port (in this process, one torch thread), opens the page in Debian's Chromium
through Playwright, starts a drive, holds the right arrow key and plays for ``--seconds`` at the model's own rate and
then as fast as it goes, printing the FPS, latency and step time the page shows at the end of each. Then it writes
the screenshot (``docs/media/demo.png`` by default). The figures depend on the machine and its load: the script
prints the load average beside them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def _shown(page) -> dict[str, str]:
    return {k: page.inner_text(f"#{k}") for k in ("fps", "latency", "server", "stepno")}


def main() -> None:
    """Parse the arguments, serve, drive, print, screenshot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hma-vq-t64.simmix")
    parser.add_argument("--embodiment", default="dmc_cheetah")
    parser.add_argument("--no-real", action="store_true", help="no real simulator beside the prediction")
    parser.add_argument("--mode", default="manual", choices=("manual", "replay", "policy"))
    parser.add_argument("--seconds", type=float, default=15.0, help="play time per rate")
    parser.add_argument("--out", default="docs/media/demo.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch
    from playwright.sync_api import sync_playwright

    from hma_zoo.demo.app import create_app, serve_in_thread
    from hma_zoo.demo.session import DemoConfig, SessionManager

    torch.set_num_threads(1)
    import timm  # noqa: F401  (torchvision before any MuJoCo EGL context)

    config = DemoConfig(default_model=args.model, max_sessions=2)
    manager = SessionManager(config)
    manager.store.get(args.model)
    with serve_in_thread(create_app(config, manager)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1180, "height": 530})
        page.goto(url)
        page.wait_for_function(f"document.getElementById('model').value === '{args.model}' && "
                               "document.getElementById('embodiment').value !== ''")
        page.fill("#embodiment", args.embodiment)
        page.press("#embodiment", "Enter")
        if not args.no_real:
            page.check("#real")
        page.click("#start")
        page.wait_for_function("document.getElementById('stepno').textContent === 'frame 0'", timeout=60_000)
        page.check(f"input[name=mode][value={args.mode}]")
        page.click("#record")
        for rate in ("model", "max"):
            page.select_option("#rate", rate)
            page.keyboard.down("ArrowRight")
            page.click("#play")
            time.sleep(args.seconds)
            shown = _shown(page)
            page.click("#play")
            page.keyboard.up("ArrowRight")
            print(f"rate={rate}: " + " | ".join(shown.values()))
            if rate == "model":
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=args.out)
        browser.close()
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads 1; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; model {args.model}, {args.embodiment}, "
          f"real simulator {'off' if args.no_real else 'on'}, mode {args.mode}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
