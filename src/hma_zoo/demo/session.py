"""Demo sessions: one :class:`~hma_zoo.sim.Simulator` per browser session, a cap on how many, idle ones freed.

A :class:`Session` holds everything one person drives: the simulator (built on a world model shared read-only by
all sessions, :class:`ModelStore`), the prompt, the optional real twin, the latest frames, and a bounded recording.
Its methods are synchronous and run on the session's own worker thread (:attr:`Session.executor`, one thread, so a
MuJoCo twin stays on the thread that made it and a session never steps twice at once). :class:`SessionManager`
opens sessions up to ``max_sessions`` and frees those idle for ``idle_timeout_s``.

Memory per session is bounded: the simulator runs with ``record=False`` (its KV cache keeps ``window - 1`` frames
and slides, :class:`~hma_zoo.sampling.FrameStepper`), and the recording is a ring buffer of the last
``record_frames`` frames. :meth:`Session.held_nbytes` sums what grows with a drive, for the tests.

Every wrong input (unknown model or embodiment, a malformed action, an unknown message) raises :class:`DemoError`
with a message for the page; the server shows it and keeps going.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hma_zoo.demo.prompts import DatasetPrompts, ExamplePrompt, load_examples

log = logging.getLogger(__name__)

DEFAULT_MODEL = "hma-vq-t64.simmix"
MODES = ("manual", "replay", "policy")


class DemoError(ValueError):
    """A wrong input from the page (or a limit reached): the message says what and how to fix it."""


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo server.

    Args:
        default_model: the model the page starts with (``hma-zoo demo --model``).
        models: the names the page may load (default: the shipped world models and ``default_model``); nothing else
            is ever loaded, whatever a page sends.
        data_dir: a local episode dataset whose episodes are offered as prompts (``--data``).
        max_sessions: sessions served at once; one more is refused with a message.
        idle_timeout_s: a session with no message for this long is freed.
        record_frames: the recording keeps the last this many frames.
        prompt_frames: frames of a built-in or dataset prompt the simulator starts from (a real twin gives one).
        threads: torch threads per worker (1: sessions share the cores instead of fighting over them).
    """

    default_model: str = DEFAULT_MODEL
    models: tuple[str, ...] = ()
    data_dir: str | None = None
    max_sessions: int = 4
    idle_timeout_s: float = 300.0
    record_frames: int = 600
    prompt_frames: int = 2
    threads: int = 1

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        if self.record_frames < 1 or self.prompt_frames < 1 or self.threads < 1:
            raise ValueError("record_frames, prompt_frames and threads must be >= 1")

    def allowed_models(self) -> list[str]:
        """The model names the page may choose (the default first)."""
        if self.models:
            names = list(self.models)
        else:
            from hma_zoo.pretrained import pretrained_cfgs

            names = sorted(pretrained_cfgs(kind="hma"))
        return [self.default_model] + [n for n in names if n != self.default_model]


# ------------------------------------------------------------------------------------------------ models
@dataclass
class LoadedModel:
    """A world model and its tokenizer, shared read-only by every session that drives it."""

    name: str
    model: torch.nn.Module
    tokenizer: Any
    image_size: tuple[int, int]


class ModelStore:
    """Load each allowed world model once (on first use) and share it.

    Args:
        allowed: the names that may be loaded; any other name is refused with the list.
        loader: ``name -> (model, tokenizer)`` (default: :func:`hma_zoo.load_simulator`'s resolution: a pretrained
            tag, a saved folder or a hub id, with the bundled tokenizer). Tests pass tiny models.
    """

    def __init__(self, allowed: Sequence[str], loader: Callable[[str], tuple[torch.nn.Module, Any]] | None = None
                 ) -> None:
        self.allowed = list(allowed)
        self._loader = loader or _load_pretrained
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        """The loaded model ``name``. Raises :class:`DemoError` for a name not in :attr:`allowed`."""
        if name not in self.allowed:
            raise DemoError(f"unknown model {name!r}; this demo serves: {', '.join(self.allowed)} "
                            "(start it with --model NAME for another)")
        with self._lock:
            if name not in self._models:
                model, tok = self._loader(name)
                model.eval().requires_grad_(False)
                if isinstance(tok, torch.nn.Module):
                    tok.eval().requires_grad_(False)
                spec = getattr(tok, "spec", None)
                size = tuple(spec.image_size) if spec is not None and getattr(spec, "image_size", None) else (64, 64)
                self._models[name] = LoadedModel(name, model, tok, (int(size[0]), int(size[1])))
                log.info("demo: loaded %s", name)
            return self._models[name]


def _load_pretrained(name: str) -> tuple[torch.nn.Module, Any]:
    from hma_zoo.pretrained import load_simulator

    sim = load_simulator(name, record=False)
    return sim.model, sim.tokenizer


# ------------------------------------------------------------------------------------------------ helpers
def encode_png(frame: np.ndarray) -> str:
    """uint8 ``[H, W, 3]`` -> a ``data:image/png;base64,...`` URL for an ``<img>``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def parse_action(raw: Any, action_dim: int, stride: int) -> np.ndarray:
    """A page's action (a list of ``action_dim`` numbers, one control step held for the frame, or ``stride *
    action_dim`` numbers, one frame's chunk) as float32 ``[stride * action_dim]``.

    Raises:
        DemoError: not a list of finite numbers of one of the two widths (the message gives both).
    """
    widths = f"{action_dim} numbers" + (f" (one control step) or {stride * action_dim} (a frame's chunk: stride "
                                        f"{stride} x {action_dim})" if stride > 1 else "")
    if not isinstance(raw, list | tuple) or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                                    for x in raw):
        raise DemoError(f"malformed action {str(raw)[:80]!r}: send a list of {widths}")
    a = np.asarray(raw, np.float64)
    if not np.isfinite(a).all():
        raise DemoError(f"malformed action {list(raw)}: NaN or infinite values")
    if a.shape[0] == action_dim:
        a = np.tile(a, stride)
    elif a.shape[0] != stride * action_dim:
        raise DemoError(f"malformed action: {a.shape[0]} values; this embodiment takes {widths}")
    return a.astype(np.float32)


def finite_number(x: Any, name: str, lo: float, hi: float, integer: bool = False) -> float:
    """``x`` as a float in ``[lo, hi]`` (a whole number when ``integer``); :class:`DemoError` otherwise."""
    ok = not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x) and lo <= x <= hi
    if not ok or (integer and not float(x).is_integer()):
        raise DemoError(f"{name} must be {'an integer' if integer else 'a number'} in [{lo}, {hi}], got {x!r}")
    return float(x)


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``[K, H, W, 3]`` resized to ``size`` (bilinear) when it differs."""
    if frames.shape[1:3] == tuple(size):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.BILINEAR)) for f in frames])


# ------------------------------------------------------------------------------------------------ session
@dataclass
class _Drive:
    """What a started session drives (set by :meth:`Session.start`)."""

    loaded: LoadedModel
    embodiment: str
    action_dim: int
    stride: int
    prompt: ExamplePrompt | None
    k: int
    real: Any = None
    real_note: str = ""
    seed: int = 0
    t: int = 0
    steps: int = 2
    temperature: float = 0.0
    low: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    high: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


class Session:
    """One person's drive (see the module docstring). Methods return JSON-ready dicts for the page.

    Args:
        sid: the session id (random, unguessable).
        store: the shared models.
        config: the server's settings.
        examples: built-in prompts, embodiment -> :class:`ExamplePrompt`.
        data: prompts from a local dataset, or ``None``.
    """

    def __init__(self, sid: str, store: ModelStore, config: DemoConfig, examples: dict[str, ExamplePrompt],
                 data: DatasetPrompts | None = None) -> None:
        self.id = sid
        self.store, self.config, self.examples, self.data = store, config, examples, data
        self.sim: Any = None
        self.drive: _Drive | None = None
        self.recording = False
        self.frames: deque[np.ndarray] = deque(maxlen=config.record_frames)
        self.last_seen = time.monotonic()
        self.closed = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"demo-{sid[:6]}",
                                           initializer=torch.set_num_threads, initargs=(config.threads,))

    # ------------------------------------------------------------------ describing
    def describe(self, model: str) -> dict[str, Any]:
        """What the page needs to offer a model's embodiments: per embodiment its action width, stride, prompts
        (``example``, dataset episode ids), frame rate and whether a real twin exists."""
        from hma_zoo.demo.real import real_status

        loaded = self.store.get(model)
        out = []
        for spec in loaded.model.config.embodiments:
            prompts = (["example"] if spec.name in self.examples else []) + (
                [f"episode:{e}" for e in self.data.episodes(spec.name)] if self.data is not None else [])
            real_ok, real_why = real_status(spec.name)
            out.append({"name": spec.name, "action_dim": spec.action_dim, "stride": spec.stride, "prompts": prompts,
                        "frame_hz": self._frame_hz(spec.name), "real": real_ok, "real_note": real_why})
        return {"type": "model", "model": model, "embodiments": out, "policy": loaded.model.action_heads is not None}

    def _frame_hz(self, embodiment: str) -> float:
        """The recorded frame rate of ``embodiment`` (built-in example, else the dataset's manifest; 0 = unknown)."""
        if embodiment in self.examples:
            return self.examples[embodiment].frame_hz
        info = self.data.info(embodiment) if self.data is not None else None
        return float(info.get("frame_hz") or 0.0) if info else 0.0

    # ------------------------------------------------------------------ start / reset
    def _prompt(self, embodiment: str, prompt: str) -> ExamplePrompt:
        if prompt == "example":
            if embodiment not in self.examples:
                raise DemoError(f"there is no built-in example prompt for {embodiment!r} (examples: "
                                f"{', '.join(sorted(self.examples)) or 'none'}); start the demo with --data DIR "
                                "holding its episodes, or use the real simulator")
            return self.examples[embodiment]
        if prompt.startswith("episode:"):
            if self.data is None:
                raise DemoError("dataset prompts need a dataset: start the demo with --data DIR")
            try:
                p = self.data.load(prompt.removeprefix("episode:"))
            except KeyError as err:
                raise DemoError(str(err.args[0])) from None
            if p.embodiment != embodiment:
                raise DemoError(f"episode {prompt!r} is of {p.embodiment!r}, not {embodiment!r}")
            return p
        raise DemoError(f"unknown prompt {prompt!r}: use 'example', 'episode:ID' or the real simulator")

    def start(self, model: str, embodiment: str, prompt: str = "example", real: bool = False, seed: int = 0,
              steps: int = 2, temperature: float = 0.0) -> dict[str, Any]:
        """Build this session's simulator on ``model`` and reset it on a prompt of ``embodiment``.

        ``prompt``: ``"example"`` (built-in), ``"episode:ID"`` (``--data``); with ``real=True`` the real simulator
        is reset with ``seed`` and its first frame is the prompt. Returns the first frame and the controls' setup.
        """
        from hma_zoo.sim import Simulator

        loaded = self.store.get(model)
        names = loaded.model.config.embodiment_names
        if embodiment not in names:
            raise DemoError(f"unknown embodiment {embodiment!r} for {model}; it knows: {', '.join(names)}")
        steps = int(finite_number(steps, "steps", 1, 16, integer=True))
        temperature = finite_number(temperature, "temperature", 0.0, 5.0)
        seed = int(finite_number(seed, "seed", 0, 2**31 - 1, integer=True))
        spec = loaded.model.config.embodiment(embodiment)
        self._close_real()
        p = None if real else self._prompt(embodiment, prompt)
        if p is not None and p.actions.shape[1] != spec.action_dim:
            raise DemoError(f"the prompt's actions are {p.actions.shape[1]} wide; {embodiment!r} takes "
                            f"{spec.action_dim}")
        gen = torch.Generator().manual_seed(int(seed))
        self.sim = Simulator(loaded.model, loaded.tokenizer, steps=steps, temperature=float(temperature),
                             generator=gen, record=False)
        low, high = self._bounds(spec, p)
        self.drive = _Drive(loaded, embodiment, spec.action_dim, spec.stride, p, 1, seed=int(seed), steps=steps,
                            temperature=float(temperature), low=low, high=high)
        if real:
            from hma_zoo.demo.real import make_real

            try:
                self.drive.real = make_real(embodiment, spec.stride, loaded.image_size)
            except ValueError as err:
                raise DemoError(str(err)) from None
        info = self.reset()
        ex = p if p is not None else self.examples.get(embodiment)
        neutral = p.neutral_action(self.drive.k) if p is not None else np.clip(np.zeros(spec.action_dim), low, high)
        if self.drive.real is not None and self.drive.real.position() is not None:
            neutral = self.drive.real.position()  # a position target starts where the real pusher is
        names_ = list(ex.action_names) if ex is not None else []
        control = ex.control if ex is not None else "velocity"
        info.update(type="started", model=model, embodiment=embodiment, action_dim=spec.action_dim,
                    stride=spec.stride, low=low.tolist(), high=high.tolist(), neutral=[float(x) for x in neutral],
                    action_names=names_, control=control, frame_hz=self._frame_hz(embodiment), replay=p is not None,
                    policy=loaded.model.action_heads is not None, real=self.drive.real is not None,
                    source=p.source if p is not None else f"real simulator, seed {seed}")
        return info

    def _bounds(self, spec: Any, p: ExamplePrompt | None) -> tuple[np.ndarray, np.ndarray]:
        """The action range the page offers: the prompt's (the recorded data's), else the built-in example's, else
        the model's mean +- 3 std."""
        src = p if p is not None else self.examples.get(spec.name)
        if src is not None and src.low.shape[0] == spec.action_dim:
            return src.low.astype(np.float32), src.high.astype(np.float32)
        mean = np.asarray(spec.action_mean if spec.action_mean is not None else [0.0] * spec.action_dim, np.float32)
        std = np.asarray(spec.action_std if spec.action_std is not None else [1.0] * spec.action_dim, np.float32)
        return mean - 3 * std, mean + 3 * std

    def reset(self) -> dict[str, Any]:
        """Go back to the prompt (a new real episode with the same seed); returns the first frame."""
        d = self._require()
        real_frame = None
        if d.real is not None:
            real_frame = d.real.reset(d.seed)
            frames, rows, d.k = real_frame[None], None, 1
        else:
            d.k = max(1, min(self.config.prompt_frames, len(d.prompt.frames)))
            frames, rows = d.prompt.frames[: d.k], d.prompt.prompt_rows(d.k)
        frames = _resize(np.asarray(frames, np.uint8), d.loaded.image_size)
        first = self.sim.reset(torch.from_numpy(frames), None if rows is None else torch.from_numpy(rows),
                               embodiment=d.embodiment).numpy()
        d.t, d.real_note = 0, ""
        if self.sim.stepper.generator is not None:
            self.sim.stepper.generator.manual_seed(d.seed)
        self.frames.clear()
        self._record(first, real_frame)
        return {"type": "frame", "step": 0, "image": encode_png(first),
                "real_image": None if real_frame is None else encode_png(real_frame), "action": None,
                "server_ms": 0.0, "recorded": len(self.frames), "recording": self.recording}

    # ------------------------------------------------------------------ stepping
    def step(self, action: Any = None, mode: str = "manual") -> dict[str, Any]:
        """Generate the next frame under ``action`` (``manual``), the recorded actions (``replay``) or the model's
        own action head (``policy``); the real twin, if any, executes the same chunk. Returns the frame(s)."""
        d = self._require()
        t0 = time.perf_counter()
        if mode == "manual":
            chunk = parse_action(action, d.action_dim, d.stride)
            chunk = np.clip(chunk, np.tile(d.low, d.stride), np.tile(d.high, d.stride))
        elif mode == "replay":
            if d.prompt is None:
                raise DemoError("nothing to replay: a real-simulator start has no recorded actions; choose a prompt "
                                "('example' or an episode) or drive by hand")
            try:
                chunk = d.prompt.replay_chunk(d.k, d.t)
            except ValueError as err:
                raise DemoError(str(err)) from None
        elif mode == "policy":
            chunk = self._policy_chunk()
        else:
            raise DemoError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        frame = self.sim.step(torch.from_numpy(chunk)).numpy()
        real_frame = None
        if d.real is not None and not d.real_note:
            try:
                real_frame = d.real.step(chunk)
            except Exception as err:  # a simulator's own limit (Meta-World's episode length) ends the twin
                d.real_note = f"the real simulator stopped at frame {d.t + 1} ({err}); press Reset to start again"
                log.info("demo session %s: %s", self.id[:6], d.real_note)
        d.t += 1
        self._record(frame, real_frame)
        return {"type": "frame", "step": d.t, "image": encode_png(frame),
                "real_image": None if real_frame is None else encode_png(real_frame),
                "action": [round(float(x), 4) for x in chunk[: d.action_dim]], "mode": mode,
                "server_ms": round(1e3 * (time.perf_counter() - t0), 2), "recorded": len(self.frames),
                "recording": self.recording, "note": d.real_note}

    @torch.no_grad()
    def _policy_chunk(self) -> np.ndarray:
        """The model's own action for the next frame (:meth:`hma_zoo.model.HMA.predict_action`, policy mode) from the
        simulator's context (its last ``window - 1`` frames and the actions between them), clipped to the range."""
        d = self._require()
        model = d.loaded.model
        if model.action_heads is None:
            raise DemoError(f"{d.loaded.name} has no action head (built with predict_actions=False): no policy mode")
        st = self.sim.stepper
        b = st.batch
        tokens = model.from_trunk_tokens(st.frames[:b])
        # stepper rows[t] led *to* frame t; predict_action reads row t as executed *after* frame t (last: unknown)
        rows = torch.cat((st.rows[:b, 1:], torch.zeros_like(st.rows[:b, :1])), 1).to(model.pos.dtype)
        pred = model.predict_action(tokens, rows, [d.embodiment] * b)[0, : d.action_dim * d.stride]
        chunk = pred.float().cpu().numpy()
        return np.clip(chunk, np.tile(d.low, d.stride), np.tile(d.high, d.stride)).astype(np.float32)

    # ------------------------------------------------------------------ recording
    def _record(self, frame: np.ndarray, real_frame: np.ndarray | None) -> None:
        if not self.recording:
            return
        if self.drive is not None and self.drive.real is not None:
            from hma_zoo.video import side_by_side

            right = real_frame if real_frame is not None else np.zeros_like(frame)
            frame = side_by_side(frame[None], _resize(right[None], frame.shape[:2]))[0]
        self.frames.append(frame)

    def set_recording(self, on: bool) -> dict[str, Any]:
        """Start (clearing the buffer) or stop recording."""
        if on and not self.recording:
            self.frames.clear()
        self.recording = bool(on)
        return {"type": "recording", "recording": self.recording, "recorded": len(self.frames),
                "max_frames": self.config.record_frames}

    def video(self, fmt: str) -> bytes:
        """The recorded frames as ``gif`` or ``mp4`` bytes (at the prompt's frame rate, else 10 FPS)."""
        from hma_zoo.video import save_video

        if fmt not in ("gif", "mp4"):
            raise DemoError(f"unknown video format {fmt!r}: gif or mp4")
        if not self.frames:
            raise DemoError("nothing recorded yet: press Record, drive, then download")
        d = self.drive
        hz = d.prompt.frame_hz if d is not None and d.prompt is not None else 10.0
        with tempfile.TemporaryDirectory() as tmp:
            path = save_video(Path(tmp) / f"drive.{fmt}", np.stack(list(self.frames)), fps=hz or 10.0)
            return path.read_bytes()

    # ------------------------------------------------------------------ bookkeeping
    def held_nbytes(self) -> int:
        """Bytes this session holds that could grow with a drive: the KV cache, the simulator's context and the
        recording (the shared model is not counted)."""
        n = sum(f.nbytes for f in self.frames)
        if self.sim is not None and self.sim.stepper.frames is not None:
            st = self.sim.stepper
            n += self.sim.cache_nbytes() + st.frames.nbytes + st.rows.nbytes + st.unks.nbytes
        return n

    def _require(self) -> _Drive:
        if self.closed:
            raise DemoError("this session was closed (idle too long?); reload the page")
        if self.drive is None or self.sim is None:
            raise DemoError("press Start first: no model is loaded in this session")
        return self.drive

    def _close_real(self) -> None:
        if self.drive is not None and self.drive.real is not None:
            try:
                self.drive.real.close()
            except Exception:  # pragma: no cover - best effort
                log.debug("closing a real twin failed", exc_info=True)
            self.drive.real = None

    def close(self) -> None:
        """Free the simulator, the twin and the recording (runs on the worker thread), then stop the thread."""
        if self.closed:
            return
        self.closed = True

        def _free() -> None:
            self._close_real()
            self.sim, self.drive = None, None
            self.frames.clear()

        self.executor.submit(_free)
        self.executor.shutdown(wait=False)


# ------------------------------------------------------------------------------------------------ manager
class SessionManager:
    """Open sessions up to the cap, find them by id, free idle ones.

    Args:
        config: the server's settings (``max_sessions``, ``idle_timeout_s``).
        store: the shared models (default: one over ``config.allowed_models()``).
        examples: built-in prompts (default: the packaged ones).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, config: DemoConfig, store: ModelStore | None = None,
                 examples: dict[str, ExamplePrompt] | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.config = config
        self.store = store or ModelStore(config.allowed_models())
        self.examples = load_examples() if examples is None else examples
        self.data = DatasetPrompts(config.data_dir) if config.data_dir else None
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self) -> Session:
        """A new session. Raises :class:`DemoError` at the cap."""
        with self._lock:
            if len(self.sessions) >= self.config.max_sessions:
                raise DemoError(f"the demo is busy: it serves at most {self.config.max_sessions} sessions at once and "
                                "all are in use. Try again in a minute (idle sessions are freed after "
                                f"{self.config.idle_timeout_s:.0f} s), or start the server with a larger "
                                "--max-sessions")
            sid = secrets.token_urlsafe(16)
            s = Session(sid, self.store, self.config, self.examples, self.data)
            s.last_seen = self.clock()
            self.sessions[sid] = s
            return s

    def get(self, sid: str) -> Session:
        """The open session ``sid``. Raises :class:`DemoError` when there is none."""
        s = self.sessions.get(sid)
        if s is None:
            raise DemoError("no such session (it was closed or freed after being idle); reload the page")
        return s

    def touch(self, session: Session) -> None:
        """Note activity on ``session`` (it is not idle)."""
        session.last_seen = self.clock()

    def close(self, sid: str) -> None:
        """Close and forget session ``sid`` (no error if it is already gone)."""
        with self._lock:
            s = self.sessions.pop(sid, None)
        if s is not None:
            s.close()

    def reap(self) -> list[str]:
        """Close the sessions idle for longer than ``idle_timeout_s``; returns their ids."""
        now = self.clock()
        idle = [sid for sid, s in list(self.sessions.items()) if now - s.last_seen > self.config.idle_timeout_s]
        for sid in idle:
            log.info("demo: freeing session %s after %.0f s idle", sid[:6], self.config.idle_timeout_s)
            self.close(sid)
        return idle

    def close_all(self) -> None:
        """Close every session (server shutdown)."""
        for sid in list(self.sessions):
            self.close(sid)
