"""Load on the demo server: N concurrent sessions driving a shipped model, frames per second each, server memory.

Usage::

    nice .venv/bin/python benchmarks/demo_load.py [--sessions 8] [--frames 150] [--model hma-vq-t64.simmix]
        [--embodiments pusht dmc_cheetah dmc_cartpole metaworld_sawyer] [--port 0]

Starts ``hma-zoo demo`` as its own process on a free localhost port (``--max-sessions`` = ``--sessions``, one
torch thread per session worker), waits for it, reads its resident memory (RSS), then opens ``--sessions`` websocket
sessions at once. Each starts the model on a built-in example prompt (embodiments taken in turn) and asks for
``--frames`` frames, the next as soon as the last arrives (the page's "as fast as it goes"), under a held action;
``--rounds`` repeats that (sessions open and close each round: RSS after each round shows whether closing frees).
Prints per session its frames per second (from its first to its last frame), the median round trip and its longest
gap between two frames, then the median over sessions, the frames per second summed over sessions, and the
server's RSS before, at its peak (sampled every 0.25 s) and after the sessions closed. The machine and its load
average are printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request

import psutil
import websockets


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the demo server did not answer in time")


async def _session(url: str, model: str, embodiment: str, frames: int, start_gate: asyncio.Event
                   ) -> dict[str, float]:
    """One session: start, then ``frames`` steps with one request in flight; its figures."""
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        hello = json.loads(await ws.recv())
        if hello["type"] != "hello":
            raise RuntimeError(f"refused: {hello.get('message')}")
        await start_gate.wait()
        await ws.send(json.dumps({"type": "start", "model": model, "embodiment": embodiment}))
        started = json.loads(await ws.recv())
        if started["type"] != "started":
            raise RuntimeError(f"start failed: {started.get('message')}")
        low, high = started["low"], started["high"]
        action = [lo + 0.75 * (hi - lo) for lo, hi in zip(low, high)]  # a held key
        times, rtts, server_ms = [], [], []
        for _ in range(frames):
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "step", "action": action}))
            reply = json.loads(await ws.recv())
            t1 = time.perf_counter()
            if reply["type"] != "frame":
                raise RuntimeError(f"step failed: {reply.get('message')}")
            times.append(t1)
            rtts.append(t1 - t0)
            server_ms.append(reply["server_ms"])
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"embodiment": embodiment, "fps": (len(times) - 1) / (times[-1] - times[0]),
            "rtt_ms": 1e3 * statistics.median(rtts), "max_gap_ms": 1e3 * max(gaps),
            "server_ms": statistics.median(server_ms), "frames": len(times)}


async def _run(url: str, args: argparse.Namespace, proc: psutil.Process) -> tuple[list[dict], int]:
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            await asyncio.sleep(0.25)

    gate = asyncio.Event()
    tasks = [asyncio.create_task(_session(url, args.model, args.embodiments[i % len(args.embodiments)],
                                          args.frames, gate)) for i in range(args.sessions)]
    sampler = asyncio.create_task(sample())
    await asyncio.sleep(1.0)  # every session connected, then all start together
    gate.set()
    results = await asyncio.gather(*tasks)
    done.set()
    await sampler
    return list(results), peak


def main() -> None:
    """Parse the arguments, run the server and the sessions, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--frames", type=int, default=150, help="frames per session")
    parser.add_argument("--model", default="hma-vq-t64.simmix")
    parser.add_argument("--embodiments", nargs="+", default=["pusht", "dmc_cheetah", "dmc_cartpole",
                                                              "metaworld_sawyer"])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the sessions this many times (the figures are "
                                                              "the last round's; RSS after each is printed)")
    args = parser.parse_args()

    port = args.port or _free_port()
    cmd = [sys.executable, "-m", "hma_zoo.cli", "demo", "--model", args.model, "--port", str(port),
           "--max-sessions", str(args.sessions)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", server)
        proc = psutil.Process(server.pid)
        time.sleep(1.0)
        rss_before = proc.memory_info().rss
        load_before = os.getloadavg()
        rss_after_rounds = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            results, peak = asyncio.run(_run(f"ws://127.0.0.1:{port}/ws", args, proc))
            wall = time.perf_counter() - t0
            time.sleep(2.0)  # the sessions' threads free what they held
            rss_after_rounds.append(proc.memory_info().rss)
        rss_after = rss_after_rounds[-1]
        load_after = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"{args.sessions} sessions x {args.frames} frames, {args.model}, frames requested back to back")
    print(f"{'session':>7} {'embodiment':<17} {'FPS':>6} {'round trip ms':>13} {'server step ms':>14} "
          f"{'longest gap ms':>14}")
    for i, r in enumerate(results):
        print(f"{i:>7} {r['embodiment']:<17} {r['fps']:>6.2f} {r['rtt_ms']:>13.1f} {r['server_ms']:>14.1f} "
              f"{r['max_gap_ms']:>14.1f}")
    fps = [r["fps"] for r in results]
    print(f"per-session FPS: median {statistics.median(fps):.2f} (min {min(fps):.2f}, max {max(fps):.2f}); "
          f"summed over sessions {sum(fps):.1f} FPS; every session got all {args.frames} frames: "
          f"{all(r['frames'] == args.frames for r in results)}; wall {wall:.1f} s")
    mib = 2**20
    print(f"server RSS: before {rss_before / mib:.0f} MiB, peak {peak / mib:.0f} MiB, after {rss_after / mib:.0f} MiB "
          f"(peak - before: {(peak - rss_before) / mib:.0f} MiB, {(peak - rss_before) / mib / args.sessions:.1f} MiB "
          "per session)")
    if args.rounds > 1:
        print("server RSS after each round: " + ", ".join(f"{r / mib:.0f}" for r in rss_after_rounds) + " MiB")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, one torch thread per "
          f"session worker; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
