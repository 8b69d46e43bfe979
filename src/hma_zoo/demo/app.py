"""``hma-zoo demo``: drive a world model in the browser, in real time.

::

    hma-zoo demo                                   # hma-vq-t64.simmix on http://127.0.0.1:7860
    hma-zoo demo --model hma-mar-t64.simmix --port 8000 --data data/sim-mix-mini

A Starlette app served by uvicorn, single process. The page (``static/``) talks to the server over one websocket
per browser tab: each tab is a :class:`~hma_zoo.demo.session.Session` with its own
:class:`~hma_zoo.sim.Simulator`, stepped on the session's own worker thread (torch threads = ``--threads``, 1 by
default) so the event loop never waits for a frame. The page asks for the next frame when the last one has arrived
and the embodiment's frame interval has passed, so a slow machine lowers the frame rate instead of queueing
requests; it shows the frame rate it gets and the round-trip latency.

Why not Gradio (measured on this 2-core machine, under load, Gradio 6.31 in Chromium 150): a Gradio generator
streams 64 x 64 frames fast (115 frames/s with no model), but each input event is a queued HTTP request with its
own round trip: one click -> one frame took 70 ms median, at most 14 steps/s before the model runs, and a running
generator cannot read new key presses. A websocket carries the action and the frame in one message each way.

Messages (JSON), page -> server: ``describe`` (a model's embodiments and prompts), ``start``, ``step`` (``action``:
numbers, ``mode``: manual / replay / policy), ``reset``, ``record`` (``on``). Server -> page: ``hello``, ``model``,
``started``, ``frame``, ``recording``, ``error`` (``message``; ``fatal`` when the session is gone). Downloads:
``GET /recording/{session}/{gif|mp4}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from hma_zoo.demo.session import DEFAULT_MODEL, DemoConfig, DemoError, Session, SessionManager

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _text(msg: dict[str, Any], key: str, default: str | None = None) -> str:
    value = msg.get(key, default)
    if not isinstance(value, str) or not value:
        raise DemoError(f"'{key}' must be a non-empty string, got {value!r}")
    return value


def _call(session: Session, msg: dict[str, Any]) -> functools.partial[dict[str, Any]]:
    """The session method a page message asks for (checked, not yet run)."""
    kind = msg.get("type")
    if kind == "describe":
        return functools.partial(session.describe, _text(msg, "model"))
    if kind == "start":
        return functools.partial(session.start, model=_text(msg, "model"), embodiment=_text(msg, "embodiment"),
                                 prompt=_text(msg, "prompt", "example"), real=bool(msg.get("real", False)),
                                 seed=msg.get("seed", 0), steps=msg.get("steps", 2),
                                 temperature=msg.get("temperature", 0.0))
    if kind == "step":
        return functools.partial(session.step, msg.get("action"), _text(msg, "mode", "manual"))
    if kind == "reset":
        return functools.partial(session.reset)
    if kind == "record":
        return functools.partial(session.set_recording, bool(msg.get("on")))
    raise DemoError(f"unknown message type {kind!r}; the page sends describe, start, step, reset or record")


async def handle_message(session: Session, raw: str) -> dict[str, Any]:
    """Run one page message on the session's worker thread; any failure becomes an ``error`` reply (a wrong input
    says what to fix; anything else is logged with its traceback and reported in one line)."""
    req_id = None
    try:
        msg = json.loads(raw)
        if not isinstance(msg, dict):
            raise DemoError("a message is a JSON object with a 'type'")
        req_id = msg.get("id")
        fn = _call(session, msg)
        reply = await asyncio.get_running_loop().run_in_executor(session.executor, fn)
    except json.JSONDecodeError as err:
        reply = {"type": "error", "message": f"malformed message (not JSON: {err.msg})"}
    except DemoError as err:
        reply = {"type": "error", "message": str(err)}
    except RuntimeError as err:
        if session.closed:  # the executor was shut down under this message: the session was freed
            reply = {"type": "error", "message": str(err), "fatal": True}
        else:
            log.exception("demo: a message failed")
            reply = {"type": "error", "message": f"internal error: {type(err).__name__}: {err}"}
    except Exception as err:  # the server must keep serving: report, log, go on
        log.exception("demo: a message failed")
        reply = {"type": "error", "message": f"internal error: {type(err).__name__}: {err}"}
    if req_id is not None:
        reply["id"] = req_id
    return reply


def create_app(config: DemoConfig, manager: SessionManager | None = None) -> Any:
    """The Starlette app of the demo (``manager``: sessions; default one built from ``config``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket, WebSocketDisconnect

    manager = manager or SessionManager(config)
    sockets: dict[str, WebSocket] = {}

    async def index(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    async def health(_: Request) -> Response:
        return JSONResponse({"sessions": len(manager.sessions), "max_sessions": config.max_sessions})

    async def recording(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        try:
            session = manager.get(request.path_params["sid"])
            data = await asyncio.get_running_loop().run_in_executor(session.executor, session.video, fmt)
        except DemoError as err:
            return PlainTextResponse(str(err), status_code=404)
        media = {"gif": "image/gif", "mp4": "video/mp4"}[fmt]
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="hma-demo.{fmt}"'})

    async def ws_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            session = manager.open()
        except DemoError as err:
            await websocket.send_json({"type": "error", "message": str(err), "fatal": True})
            await websocket.close(code=1013)  # try again later
            return
        sockets[session.id] = websocket
        await websocket.send_json({"type": "hello", "session": session.id, "models": config.allowed_models(),
                                   "default_model": config.default_model, "data": config.data_dir is not None,
                                   "record_frames": config.record_frames, "idle_timeout_s": config.idle_timeout_s})
        try:
            while True:
                raw = await websocket.receive_text()
                manager.touch(session)
                if session.closed:
                    await websocket.send_json({"type": "error", "fatal": True, "message": "this session was freed "
                                               "after being idle; reload the page"})
                    break
                await websocket.send_json(await handle_message(session, raw))
        except (WebSocketDisconnect, RuntimeError):  # closed by the page, or by the reaper under us
            pass
        finally:
            sockets.pop(session.id, None)
            manager.close(session.id)

    async def reaper() -> None:
        period = max(0.05, min(5.0, config.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            for sid in manager.reap():
                ws = sockets.pop(sid, None)
                if ws is not None:
                    with contextlib.suppress(Exception):
                        await ws.send_json({"type": "error", "fatal": True, "message": "session freed after "
                                            f"{config.idle_timeout_s:.0f} s without activity; reload the page"})
                        await ws.close(code=1001)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            task.cancel()
            manager.close_all()

    routes = [
        Route("/", index),
        Route("/healthz", health),
        Route("/recording/{sid}/{fmt:str}", recording),
        WebSocketRoute("/ws", ws_endpoint),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.manager = manager
    return app


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for tests and scripts)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int | None = None,
                    timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a background thread; yields its URL and stops it on exit (tests, scripts)."""
    import threading
    import time

    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="hma-demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hma-zoo demo", description="Drive a world model in the browser, in real time.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="world model the page starts with: a pretrained tag, a saved folder or a hub id (the shipped "
                        "world models can be chosen in the page too)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes the demo to the network)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on")
    p.add_argument("--data", default=None, help="episode dataset whose episodes are offered as prompts")
    p.add_argument("--max-sessions", type=int, default=4, help="browser sessions served at once")
    p.add_argument("--idle-timeout", type=float, default=300.0, help="seconds without activity before a session is "
                                                                     "freed")
    p.add_argument("--record-frames", type=int, default=600, help="the recording keeps the last this many frames")
    p.add_argument("--prompt-frames", type=int, default=2, help="prompt frames a drive starts from (at most 4 for the "
                                                                "built-in examples)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per session worker")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hma-zoo demo``: load the default model (a wrong name fails here), then serve."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")  # the real twins render headless
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    import torch
    import uvicorn

    torch.set_num_threads(args.threads)
    config = DemoConfig(default_model=args.model, data_dir=args.data, max_sessions=args.max_sessions,
                        idle_timeout_s=args.idle_timeout, record_frames=args.record_frames,
                        prompt_frames=args.prompt_frames, threads=args.threads)
    manager = SessionManager(config)
    manager.store.get(args.model)  # fail now, with the pretrained table in the message, not in the page
    with contextlib.suppress(ImportError):  # torchvision before any MuJoCo EGL context (see policy.tasks)
        import timm  # noqa: F401
    app = create_app(config, manager)
    log.info("hma-zoo demo: open http://%s:%d in a browser (%s; at most %d sessions)", args.host, args.port,
             args.model, args.max_sessions)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
