"""Evaluation of a world model on held-out windows: teacher-forced and autoregressive predictions against fair
baselines, an action-following state probe, rollout horizons, policy-mode baselines, and a loss-only mode.

For every validation window (``L`` frames, actions, embodiment, and the recorded state when the data have it):

* ``teacher_forced``: frame ``t >= 1`` of the first ``window`` frames predicted from the ground-truth frames
  ``< t``;
* ``rollout``: a true autoregressive rollout from ``prompt`` ground-truth frames over all ``L`` frames, every
  generated frame fed back (``L`` defaults to 4x the training window, so the KV cache slides). Its aggregate rows
  average the first window; the per-step rows (``horizon = 1, 2, ...``) and ``horizons.png`` show the rest.

Methods (rows), all scored against the real frames when the data hold frames:

* ``model``: the true actions. ``model_random_actions``: actions drawn from the embodiment's ``N(mean, std^2)``
  (mean over ``random_draws`` draws). ``model_zero_actions``: all actions 0 (raw units). The three runs of a window
  share one sampler seed (noise and unmasking order), so they differ only in their actions;
* ``copy_last_frame``: the last given real frame repeated; ``copy_last_frame_tokenized``: the same through the
  tokenizer (``decode(encode(frame))``), so the copy and the model share the tokenizer's ceiling;
* ``tokenizer_recon``: ``decode(encode(ground truth))``, the ceiling of any model using this tokenizer;
* ``ground_truth``: the real frames themselves, scored only by the state probe: its error there is the floor.

Metrics: PSNR, SSIM; ``delta_psnr`` (model row: PSNR with the true actions minus PSNR with random actions, per
sample); ``state_error`` / ``state_error_norm`` (RMS error of the state a :class:`~hma_zoo.eval.probe.StateProbe`
reads off the predicted frames against the recorded state, in the state's units and in train standard deviations);
``token_acc`` (``vq``: share of predicted ids equal to the true ids; for ``copy_last_frame_tokenized`` the share
equal to the previous frame's ids, i.e. token copy); ``perplexity`` (``vq``, fully hidden next frame given the true
past); the project's own Frechet video distance (NOT comparable to published FVD). ``policy`` rows (models with
action heads): normalised MSE of ``predict``-ed action chunks against the true ones, beside zero-action,
mean-action and repeat-previous-action baselines.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hma_zoo.eval.features import load_lpips, video_feature_fn
from hma_zoo.eval.metrics import psnr, sample_random_actions, ssim
from hma_zoo.eval.report import Accumulator, summarise, to_markdown, write_outputs
from hma_zoo.model.stems import factorize_ids, route

log = logging.getLogger(__name__)

MODES = ("teacher_forced", "rollout")
METHODS = ("model", "model_random_actions", "model_zero_actions", "copy_last_frame", "copy_last_frame_tokenized",
           "tokenizer_recon", "ground_truth")
POLICY_METHODS = ("model", "zero_action", "mean_action", "repeat_previous_action")


@torch.no_grad()
def next_frame_cross_entropy(model: torch.nn.Module, tokens: torch.Tensor, actions: torch.Tensor | None,
                             embodiment: list[str], per_token: bool = False) -> torch.Tensor:
    """Cross-entropy (nats per token, no label smoothing) of each frame ``t >= 1`` of ``tokens`` ``[B, T, h, w]``
    when it is entirely hidden and frames ``< t`` are visible (``vq`` only).

    Returns the per-sample mean ``[B]``, or with ``per_token`` the values ``[B, T-1, S]`` (``[B, T-1, S * G]`` for
    grouped tokens: one value per tokenizer id)."""
    if model.kind != "vq":
        raise ValueError("perplexity is defined for vq (discrete-token) models only")
    b, t = tokens.shape[:2]
    target = model.to_trunk_tokens(tokens)
    out = []
    for k in range(1, t):
        mask = torch.zeros(b, k + 1, *tokens.shape[2:], dtype=torch.bool, device=tokens.device)
        mask[:, k] = True
        pred = model(tokens[:, : k + 1], None if actions is None else actions[:, : k + 1], embodiment, mask)
        logits = pred["video"][:, k].float()  # [B, S, sum F]
        digits = factorize_ids(target[:, k].reshape(-1), model.video_head.factor_sizes)
        ce = torch.zeros(digits.shape[0], device=logits.device)
        for i, lg in enumerate(model.video_head.split(logits.reshape(-1, logits.shape[-1]))):
            ce = ce + F.cross_entropy(lg, digits[:, i], reduction="none")
        out.append(ce.view(b, -1).cpu())
    values = torch.stack(out, 1) if out else torch.zeros(b, 0, target[:, 0].numel() // max(b, 1))
    return values if per_token else values.flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------- windows of data
@dataclass
class Window:
    """One batch of evaluation windows, everything ``[B, L, ...]``.

    ``gt``: uint8 real frames (the tokenizer's reconstruction for token shards); ``tokens`` on the model's device;
    ``recon``: uint8 ``decode(encode(gt))``; ``actions``: ``[B, L, A_model]`` on the model's device; ``valid``
    ``[B, L]``; ``state`` ``[B, L, P]`` and ``state_valid`` ``[B]`` (or ``None``); ``real_frames``: whether ``gt``
    are real frames."""

    names: list[str]
    gt: torch.Tensor
    tokens: torch.Tensor
    recon: torch.Tensor
    actions: torch.Tensor
    valid: torch.Tensor
    state: torch.Tensor | None
    state_valid: torch.Tensor | None
    real_frames: bool


def _to_frames(tokenizer: Any, tokens: torch.Tensor) -> torch.Tensor:
    param = next(iter(tokenizer.parameters()), None) if isinstance(tokenizer, torch.nn.Module) else None
    return tokenizer.decode(tokens if param is None else tokens.to(param.device)).cpu()


def load_window(batch: dict[str, Any], model: torch.nn.Module, tokenizer: Any, length: int) -> Window:
    """A batch of the data contract -> :class:`Window` of its first ``length`` frames (tokenised if needed)."""
    device = model.pos.device
    a_model = model.config.max_chunk_dim
    actions = batch["actions"].float()[:, :length]
    actions = F.pad(actions, (0, max(0, a_model - actions.shape[-1])))[..., :a_model].to(device)
    valid = batch.get("action_valid")
    valid = torch.ones(actions.shape[:2], dtype=torch.bool) if valid is None else valid[:, :length].bool()
    if "frames" in batch:
        gt = batch["frames"][:, :length]
        tokens = tokenizer.encode(gt)
        recon = _to_frames(tokenizer, tokens)
        real = True
    else:
        tokens = batch["tokens"][:, :length]
        gt = recon = _to_frames(tokenizer, tokens)
        real = False
    state = batch.get("state")
    state_valid = batch.get("state_valid")
    if state is not None:
        state = state[:, :length].float()
        if state_valid is None:
            state_valid = torch.ones(state.shape[0], dtype=torch.bool)
    return Window(list(batch["embodiment"]), gt, tokens.to(device), recon, actions, valid.cpu(), state,
                  state_valid, real)


def copy_baseline(x: torch.Tensor, mode: str, prompt: int) -> torch.Tensor:
    """The copy baseline of ``x`` ``[B, T, ...]``: teacher-forced, frame ``t`` is ``x[t-1]`` (frame 0 itself);
    rollout, the ``prompt`` frames then the last of them repeated."""
    if mode == "teacher_forced":
        return torch.cat((x[:, :1], x[:, :-1]), 1)
    last = x[:, prompt - 1 : prompt]
    return torch.cat((x[:, :prompt], last.expand(-1, x.shape[1] - prompt, *x.shape[2:])), 1)


def predict_tokens(model: torch.nn.Module, tokens: torch.Tensor, actions: torch.Tensor, names: list[str], mode: str,
                   prompt: int, sample: dict[str, Any], seed: int) -> torch.Tensor:
    """Tokens ``[B, T, ...]`` of a teacher-forced pass or of a rollout from ``prompt`` frames.

    The sampler gets a fresh generator seeded with ``seed``, so calls that differ only in ``actions`` draw the same
    sampler noise and unmasking order (their difference is the actions' doing)."""
    gen = torch.Generator(device=model.pos.device).manual_seed(seed)
    kwargs = {**sample, "generator": gen}
    if mode == "teacher_forced":
        return model.generate_teacher_forced(tokens, actions, names, **kwargs)
    return model.generate(tokens[:, :prompt], actions, names, num_frames=tokens.shape[1] - prompt, **kwargs)


# ---------------------------------------------------------------------------------------------- scoring
class Scorer:
    """Scores predicted frames of one window batch and records them in an :class:`Accumulator`."""

    def __init__(self, acc: Accumulator, probe: Any, lpips: Any, features: Any) -> None:
        self.acc, self.probe, self.lpips, self.features = acc, probe, lpips, features

    def state_keep(self, w: Window) -> torch.Tensor | None:
        """``[B]``: samples the probe can judge (state recorded and the embodiment known to the probe)."""
        if self.probe is None or w.state is None:
            return None
        known = set(self.probe.embodiments)
        keep = torch.tensor([n in known for n in w.names]) & w.state_valid.bool()
        return keep if bool(keep.any()) else None

    def frames(self, mode: str, method: str, pred: torch.Tensor, w: Window, start: int,
               quality: bool = True, record: bool = True) -> dict[str, torch.Tensor]:
        """PSNR / SSIM (/ LPIPS) and the probe's state error of ``pred`` ``[B, T, H, W, 3]`` over frames ``start:``,
        recorded under ``(mode, method)`` unless ``record`` is False; returns ``{metric: [B, T - start]}``."""
        t = pred.shape[1]
        gt = w.gt[:, :t]
        out: dict[str, torch.Tensor] = {}
        if quality:
            out["psnr"] = psnr(pred[:, start:], gt[:, start:])
            out["ssim"] = ssim(pred[:, start:], gt[:, start:])
            if self.lpips is not None:
                out["lpips"] = self.lpips(pred[:, start:], gt[:, start:])
        keep = self.state_keep(w)
        if keep is not None:
            idx = keep.nonzero(as_tuple=True)[0]
            raw, norm = self.probe.state_error(pred[idx], w.state[idx, :t], [w.names[i] for i in idx.tolist()])
            for key, val in (("state_error", raw), ("state_error_norm", norm)):
                full = torch.zeros(pred.shape[0], t - start, dtype=torch.float64)
                full[idx] = val[:, start:].double().cpu()
                out[key] = full
        if record:
            self.record(mode, method, out, w)
        return out

    def record(self, mode: str, method: str, values: dict[str, torch.Tensor], w: Window) -> None:
        """Add per-frame ``values`` ``{metric: [B, F]}`` (state metrics only for the samples the probe judges)."""
        keep = self.state_keep(w)
        for metric, val in values.items():
            self.acc.add(mode, method, metric, val, w.names, keep if metric.startswith("state") else None)


def _mean_over_draws(scores: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k].double() for s in scores]).mean(0) for k in scores[0]}


def _token_acc(pred: torch.Tensor, target: torch.Tensor, start: int) -> torch.Tensor:
    """Share of equal ids per frame ``[B, T - start]`` of ``vq`` tokens ``[B, T, h, w]``."""
    return (pred[:, start:] == target[:, start:]).flatten(2).double().mean(2).cpu()


@torch.no_grad()
def score_mode(model: torch.nn.Module, tokenizer: Any, w: Window, mode: str, length: int, prompt: int,
               sample: dict[str, Any], seed: int, random_draws: int, cpu_gen: torch.Generator, scorer: Scorer,
               ) -> torch.Tensor:
    """Predict and score every method of one mode on the first ``length`` frames of ``w``; returns the model's
    frames (for GIFs)."""
    acc, names, vq = scorer.acc, w.names, model.kind == "vq"
    start = 1 if mode == "teacher_forced" else prompt
    tokens, actions = w.tokens[:, :length], w.actions[:, :length]
    a_model = model.config.max_chunk_dim

    def run(acts: torch.Tensor) -> torch.Tensor:
        return predict_tokens(model, tokens, acts, names, mode, prompt, sample, seed)

    pred_tok = run(actions)
    pred = _to_frames(tokenizer, pred_tok)
    scores = scorer.frames(mode, "model", pred, w, start)
    draws, draw_acc = [], []
    for _ in range(random_draws):
        ra = sample_random_actions(model.config.embodiments, names, length, a_model, cpu_gen, actions.device)
        rt = run(ra)
        draws.append(scorer.frames(mode, "model_random_actions", _to_frames(tokenizer, rt), w, start, record=False))
        if vq:
            draw_acc.append(_token_acc(rt.cpu(), tokens.cpu(), start))
    if draws:
        rand = _mean_over_draws(draws)
        scorer.record(mode, "model_random_actions", rand, w)
        acc.add(mode, "model", "delta_psnr", scores["psnr"].double() - rand["psnr"], names)
        if draw_acc:
            acc.add(mode, "model_random_actions", "token_acc", torch.stack(draw_acc).mean(0), names)
    zero_tok = run(torch.zeros_like(actions))
    scorer.frames(mode, "model_zero_actions", _to_frames(tokenizer, zero_tok), w, start)
    scorer.frames(mode, "copy_last_frame", copy_baseline(w.gt[:, :length], mode, prompt), w, start)
    scorer.frames(mode, "copy_last_frame_tokenized", copy_baseline(w.recon[:, :length], mode, prompt), w, start)
    if w.real_frames:
        scorer.frames(mode, "tokenizer_recon", w.recon[:, :length], w, start)
    scorer.frames(mode, "ground_truth", w.gt[:, :length], w, start, quality=False)
    if vq:
        true_tok = tokens.cpu()
        acc.add(mode, "model", "token_acc", _token_acc(pred_tok.cpu(), true_tok, start), names)
        acc.add(mode, "model_zero_actions", "token_acc", _token_acc(zero_tok.cpu(), true_tok, start), names)
        acc.add(mode, "copy_last_frame_tokenized", "token_acc",
                _token_acc(copy_baseline(true_tok, mode, prompt), true_tok, start), names)
    return pred


@torch.no_grad()
def policy_errors(model: torch.nn.Module, w: Window, length: int) -> dict[str, torch.Tensor] | None:
    """Policy mode on the first ``length`` frames: for every frame ``t >= 1`` the action chunk predicted from
    frames ``<= t`` and rows ``< t`` against the true row ``t``, as MSE in the embodiment's normalised units over its
    chunk width and the valid rows. Returns ``{method: [B]}`` for the model and the zero-action, mean-action and
    repeat-previous-action baselines, or ``None`` for a model without action heads."""
    if getattr(model, "action_heads", None) is None:
        return None
    tokens, actions = w.tokens[:, :length], w.actions[:, :length]
    out = model(tokens, actions, w.names)
    emb_idx = out["emb_idx"]
    b, t, a = actions.shape
    pred = route(model.action_heads, emb_idx, (out["feat"],), (t, a), call="predict")
    true = model.normalize_actions(actions, emb_idx)
    width = torch.tensor([model.config.embodiments[i].chunk_dim for i in emb_idx.tolist()], device=actions.device)
    dim_mask = (torch.arange(a, device=actions.device).view(1, 1, a) < width.view(b, 1, 1)).double()
    valid = w.valid[:, :length].to(actions.device).clone()
    valid[:, 0] = False  # frame 0's chunk has no previous action to repeat; score t >= 1 for every method
    cands = {"model": pred, "zero_action": model.normalize_actions(torch.zeros_like(actions), emb_idx),
             "mean_action": torch.zeros_like(true),
             "repeat_previous_action": torch.cat((true[:, :1], true[:, :-1]), 1)}
    result = {}
    for method, cand in cands.items():
        err = ((cand.double() - true.double()).square() * dim_mask).sum(-1) / width.view(b, 1).double()
        vmask = valid.double()
        result[method] = ((err * vmask).sum(1) / vmask.sum(1).clamp_min(1)).cpu()
    return result


def score_window_extras(model: torch.nn.Module, w: Window, tf_len: int, scorer: Scorer, policy: bool) -> None:
    """What a window adds besides the predictions of each mode: ground-truth video features (own-FVD reference),
    the ``vq`` next-frame cross-entropy (perplexity) and the policy-mode errors, all on its first ``tf_len``
    frames."""
    acc = scorer.acc
    acc.add_features(("teacher_forced", "ground_truth"), scorer.features(w.gt[:, :tf_len]), w.names)
    if model.kind == "vq":
        ce = next_frame_cross_entropy(model, w.tokens[:, :tf_len], w.actions[:, :tf_len], w.names)
        acc.add("teacher_forced", "model", "ce", ce, w.names)
    errors = policy_errors(model, w, tf_len) if policy else None
    for method, err in (errors or {}).items():
        acc.add("policy", method, "action_mse", err, w.names)


def _keep_gifs(gif_rows: dict[str, list], w: Window, pred: torch.Tensor, per_embodiment: int) -> None:
    """Keep up to ``per_embodiment`` (ground truth, prediction) video pairs per embodiment for the rollout GIFs."""
    for i, name in enumerate(w.names):
        pairs = gif_rows.setdefault(name, [])
        if len(pairs) < per_embodiment:
            pairs.append((w.gt[i], pred[i]))


# ---------------------------------------------------------------------------------------------- data
def _datamodule(data: Any, model: torch.nn.Module, window: int, batch_size: int) -> Any:
    """An :class:`HMADataModule` for ``data`` (a folder / URL or a datamodule) whose strides match the model's."""
    if not isinstance(data, (str, Path)):
        return data
    from hma_zoo.data import HMADataModule

    probe = HMADataModule(str(data), window=window, batch_size=batch_size, num_workers=0)
    skip: dict[str, int] = {}
    for spec in probe.embodiments:
        if spec.name in model.config.embodiment_names:
            want = model.config.embodiment(spec.name).stride
            if want % spec.stride:
                raise ValueError(f"embodiment {spec.name!r}: the model's stride {want} is not a multiple of the "
                                 f"data's stored stride {spec.stride}")
            skip[spec.name] = want // spec.stride
    keep = sorted(skip)
    if not keep:
        raise ValueError(f"the data's embodiments {[e.name for e in probe.embodiments]} share none with the model's "
                         f"{list(model.config.embodiment_names)}")
    return HMADataModule(str(data), window=window, batch_size=batch_size, num_workers=0, frame_skip=skip,
                         embodiments=keep)


def _loader(dm: Any, split: str) -> Any:
    if hasattr(dm, "make_dataset"):
        from torch.utils.data import DataLoader

        from hma_zoo.data.datamodule import collate_windows

        ds = dm.make_dataset(split, mode="finite")
        return DataLoader(ds, batch_size=dm.hparams.batch_size, num_workers=0, collate_fn=collate_windows)
    return dm.val_dataloader() if split == "val" else dm.train_dataloader()


def _batches(dm: Any, split: str, max_windows: int):  # noqa: ANN202 - generator of batches
    seen = 0
    for batch in _loader(dm, split):
        if seen >= max_windows:
            break
        take = min(len(batch["embodiment"]), max_windows - seen)
        seen += take
        yield {k: (v[:take] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}


def _count_windows(dm: Any, split: str) -> int | None:
    """Windows available in ``split`` (from the manifests), or None when unknown."""
    ds = dm.make_dataset(split, mode="finite") if hasattr(dm, "make_dataset") else None
    try:
        return len(ds) if ds is not None else None
    except TypeError:
        return None


def _open_data(data: Any, model: torch.nn.Module, window: int, multiples: tuple[int, ...], batch_size: int,
               split: str) -> tuple[Any, int]:
    """The data module and the window length ``L``: the first of ``multiples`` x ``window`` frames for which the
    data hold at least one window (a datamodule object is used as it is)."""
    if not isinstance(data, (str, Path)):
        return data, 0
    for k in multiples:
        dm = _datamodule(data, model, k * window, batch_size)
        n = _count_windows(dm, split)
        if n is None or n > 0:
            if k != multiples[0]:
                log.warning("no %s windows of %d frames in %s; rollouts run %d frames (%dx the window)", split,
                            multiples[0] * window, data, k * window, k)
            return dm, k * window
    raise ValueError(f"no {split!r} windows of {window} frames in {data}; lower --window or pick another split")


class _Progress:
    """A rich progress bar over windows plus an INFO log line with the ETA per batch (visible when stderr is not a
    TTY)."""

    def __init__(self, total: int, what: str) -> None:
        from rich.progress import Progress

        self.total, self.what, self.done, self.t0 = total, what, 0, time.monotonic()
        self.bar = Progress(transient=True)
        self.job = self.bar.add_task(what, total=total)
        self.bar.start()

    def update(self, n: int) -> None:
        self.done += n
        self.bar.advance(self.job, n)
        elapsed = time.monotonic() - self.t0
        eta = elapsed / self.done * max(0, self.total - self.done)
        log.info("%s: %d/%d windows, %.1f min elapsed, ETA %.1f min", self.what, self.done, self.total,
                 elapsed / 60, eta / 60)

    def close(self) -> None:
        self.bar.stop()


def _load_probe(probe: Any, data: Any) -> Any:
    """A :class:`StateProbe`: the object given, a probe folder, or ``<data>/probe`` if it exists; else ``None``."""
    if probe is not None and not isinstance(probe, (str, Path)):
        return probe
    from hma_zoo.eval.probe import load_probe

    if probe is not None:
        return load_probe(probe)
    if isinstance(data, (str, Path)) and (Path(data) / "probe" / "config.json").is_file():
        log.info("state probe: %s", Path(data) / "probe")
        return load_probe(Path(data) / "probe")
    return None


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Any,
    split: str = "val",
    max_windows: int = 32,
    batch_size: int = 8,
    window: int | None = None,
    prompt_frames: int = 1,
    rollout: bool = True,
    horizon_multiple: int = 4,
    steps: int = 2,
    temperature: float = 0.0,
    random_draws: int = 3,
    seed: int = 0,
    probe: Any = None,
    policy: bool = True,
    out_dir: str | Path | None = None,
    num_gifs: int = 4,
    lpips_weights: str | None = None,
    progress: bool = True,
    diffusion_steps: int | None = None,
    sampler: str = "ddpm",
) -> dict[str, Any]:
    """Evaluate ``model`` with ``tokenizer`` on ``data`` (a dataset folder / URL or a datamodule).

    Args:
        model: the world model; tokenizer: the tokenizer it was trained with.
        data: episode shards (frames) or token shards (then the ground truth is the tokenizer's reconstruction,
            and the notes say so); a datamodule object is read as it is (its windows set ``L``).
        split: ``"val"`` or ``"train"``; max_windows: windows evaluated (in data order).
        window: the teacher-forced window and the rollout aggregate (default: the model's ``max_frames``).
        prompt_frames: ground-truth frames a rollout starts from.
        rollout: also run autoregressive rollouts.
        horizon_multiple: rollouts run over ``horizon_multiple x window`` frames (4, then 2, then 1 if the data
            hold no windows that long).
        steps, temperature: sampling (MaskGIT/MAR steps per frame; 0 = greedy for ``vq`` with confidence
            unmasking, deterministic for ``mar``).
        random_draws: random-action draws for ``model_random_actions`` and ``delta_psnr``.
        probe: a :class:`~hma_zoo.eval.probe.StateProbe`, a probe folder, or ``None`` for ``<data>/probe`` if it
            exists; without one ``state_error`` is not reported.
        policy: report ``policy`` rows for models with action heads.
        out_dir: if given, ``metrics.json``, ``metrics.md``, ``horizons.png`` and rollout GIFs go here.
        lpips_weights: torchvision AlexNet weights file to add LPIPS (skipped without one).
        diffusion_steps, sampler: ``mar`` only: the per-token diffusion sampler (``"ddpm"`` with the model's
            ``sample_steps`` by default; see docs/results.md, "Speed (issue 16)", for quality against steps).

    Returns:
        ``{"rows": [...], "markdown": str, "settings": {...}, "notes": [...]}`` (rows: see
        :mod:`hma_zoo.eval.report`).
    """
    model = model.eval()
    window = window or model.config.trunk.max_frames
    if not 1 <= prompt_frames < window:
        raise ValueError(f"prompt_frames must be in [1, window={window}), got {prompt_frames}")
    multiples = tuple(dict.fromkeys(k for k in (horizon_multiple, 2, 1) if k <= horizon_multiple)) if rollout \
        else (1,)
    dm, length = _open_data(data, model, window, multiples, batch_size, split)
    probe = _load_probe(probe, data)
    features, feature_desc = video_feature_fn(tokenizer)
    scorer = Scorer(Accumulator(), probe, load_lpips(lpips_weights), features)
    acc = scorer.acc
    cpu_gen = torch.Generator().manual_seed(seed + 1)
    sample = dict(steps=steps, temperature=temperature, unmask="confidence" if temperature == 0 else "random")
    if model.kind == "mar":
        sample.update(diffusion_steps=diffusion_steps, sampler=sampler)
    gif_rows: dict[str, list] = {}
    modes = MODES if rollout else MODES[:1]
    flags: set[str] = set()
    n_windows, total_len = 0, length
    bar = _Progress(max_windows, "evaluate") if progress else None
    for b_idx, batch in enumerate(_batches(dm, split, max_windows)):
        w = load_window(batch, model, tokenizer, length or batch["actions"].shape[1])
        total_len = w.gt.shape[1]
        tf_len = min(window, total_len)
        if not w.real_frames:
            flags.add("gt_is_recon")
        for mode in modes:
            length_m = tf_len if mode == "teacher_forced" else total_len
            pred = score_mode(model, tokenizer, w, mode, length_m, prompt_frames, sample, seed + 1000 * b_idx,
                              random_draws, cpu_gen, scorer)
            acc.add_features((mode, "model"), features(pred[:, :tf_len]), w.names)
            if mode == "rollout" and out_dir is not None:
                _keep_gifs(gif_rows, w, pred, max(1, num_gifs // max(1, len(model.config.embodiments))))
        score_window_extras(model, w, tf_len, scorer, policy)
        if scorer.state_keep(w) is None:
            flags.add("no_state" if probe is not None else "no_probe")
        n_windows += len(w.names)
        if bar is not None:
            bar.update(len(w.names))
    if bar is not None:
        bar.close()
    if n_windows == 0:
        raise ValueError(f"no {split!r} windows of {length or window} frames in the data; lower --window or pick "
                         "another split")
    tf_frames = min(window, total_len) - 1
    aggregate = {"teacher_forced": tf_frames, "rollout": max(1, min(window, total_len) - prompt_frames)}
    rows = summarise(acc, (*modes, "policy"), METHODS + tuple(m for m in POLICY_METHODS if m not in METHODS),
                     aggregate, horizon_modes=("rollout",) if rollout and total_len > window else ())
    result: dict[str, Any] = {"rows": rows}
    result["settings"] = dict(split=split, windows=n_windows, window=window, rollout_frames=total_len,
                              prompt_frames=prompt_frames, steps=steps, temperature=temperature,
                              **({"diffusion_steps": diffusion_steps or model.config.diffusion.sample_steps,
                                  "sampler": sampler} if model.kind == "mar" else {}),
                              random_draws=random_draws, seed=seed, own_fvd_features=feature_desc,
                              lpips="on" if scorer.lpips is not None else "skipped",
                              probe=_probe_summary(probe))
    result["notes"] = _notes(flags, feature_desc, window, total_len, prompt_frames)
    result["markdown"] = to_markdown(result)
    if out_dir is not None:
        write_outputs(Path(out_dir), result, gif_rows)
    return result


def _probe_summary(probe: Any) -> dict[str, Any] | None:
    if probe is None:
        return None
    from hma_zoo.eval.probe import probe_floor

    return {"embodiments": list(probe.embodiments), "floor_val_split": probe_floor(probe)}


def _notes(flags: set[str], feature_desc: str, window: int, total: int, prompt: int) -> list[str]:
    notes = [
        "delta_psnr: PSNR(true actions) - PSNR(actions ~ N(mean, std^2) of the embodiment), model rows only; the "
        "true-, random- and zero-action runs of a window share sampler noise and unmasking order.",
        "copy_last_frame_tokenized: the last given frame through the tokenizer, so it shares the model's ceiling; "
        "its token_acc is token copy (share of ids equal to the previous frame's).",
        "state_error: RMS error of the state read by the probe off the frames against the recorded state (state "
        "units; state_error_norm in train standard deviations); ground_truth rows are the probe's floor.",
        f"rollout rows average the first {max(1, min(window, total) - prompt)} generated frames; horizon rows (and "
        f"horizons.png) follow all {total - prompt}.",
        "perplexity: exp of the mean cross-entropy of a fully hidden next frame given the true past (vq only).",
        "policy rows: MSE of the action chunk in the embodiment's normalised units (predicted from frames <= t and "
        "actions < t) against zero-action, mean-action and repeat-previous-action baselines.",
        f"own_fvd: Frechet distance over {feature_desc}; NOT comparable to published FVD (I3D).",
        "LPIPS / FID / I3D-FVD need weight files that cannot be downloaded here; they are skipped without them."]
    if "gt_is_recon" in flags:
        notes.append("token shards: the ground truth is the tokenizer's reconstruction of the true tokens, so PSNR "
                     "is measured against the reconstruction, not the real frames.")
    if "no_probe" in flags:
        notes.append("no state probe: state_error not reported; fit one with `hma-zoo probe fit --data DIR`.")
    if "no_state" in flags:
        notes.append("some windows carry no recorded state (or an embodiment the probe lacks): no state_error there.")
    return notes


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Any,
    split: str = "val",
    max_windows: int = 256,
    batch_size: int = 8,
    window: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Loss-only evaluation (no sampling): the masked training loss with fixed masks and noise, and for ``vq`` the
    next-frame perplexity and how it splits between tokens that change from the previous frame and tokens that do
    not (``changed_share`` is the share that change). For sweeps and quick checks."""
    from hma_zoo.lit.masking import sample_trunk_masks

    model = model.eval()
    window = window or model.config.trunk.max_frames
    dm, length = _open_data(data, model, window, (1,), batch_size, split)
    acc = Accumulator()
    bar = _Progress(max_windows, "evaluate --loss-only") if progress else None
    n_windows = 0
    for b_idx, batch in enumerate(_batches(dm, split, max_windows)):
        w = load_window(batch, model, tokenizer, length or batch["actions"].shape[1])
        b, t = w.tokens.shape[:2]
        masks = sample_trunk_masks(model.config.tokens, b, t, generator=torch.Generator().manual_seed(seed + b_idx))
        token_mask = masks.token_mask.to(w.tokens.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + b_idx)
            out = model.compute_loss(w.tokens, w.actions, w.names, token_mask, action_valid=w.valid.to(w.tokens.device))
        acc.add("loss", "model", "video_loss", out["video_loss_per_sample"], w.names)
        if model.kind == "vq":
            ce = next_frame_cross_entropy(model, w.tokens, w.actions, w.names, per_token=True)  # [B, T-1, S]
            target = model.to_trunk_tokens(w.tokens).cpu()
            changed = (target[:, 1:] != target[:, :-1]).flatten(2).double()  # [B, T-1, S(*G)] image tokens
            acc.add("loss", "model", "ce", ce.flatten(1).mean(1), w.names)
            acc.add("loss", "model", "changed_share", changed.flatten(1).mean(1), w.names)
            acc.add("loss", "model", "ce_changed", (ce * changed).flatten(1).sum(1) /
                    changed.flatten(1).sum(1).clamp_min(1), w.names)
            acc.add("loss", "model", "ce_static", (ce * (1 - changed)).flatten(1).sum(1) /
                    (1 - changed).flatten(1).sum(1).clamp_min(1), w.names)
        n_windows += b
        if bar is not None:
            bar.update(b)
    if bar is not None:
        bar.close()
    if n_windows == 0:
        raise ValueError(f"no {split!r} windows of {window} frames in the data; lower --window or pick another split")
    rows = summarise(acc, ("loss",), ("model",), {"loss": None}, horizon_modes=())
    result: dict[str, Any] = {"rows": rows, "settings": dict(split=split, windows=n_windows, window=window,
                                                             seed=seed, loss_only=True)}
    result["notes"] = ["loss-only: masked training loss with the paper's masks drawn from a fixed seed per batch; "
                       "perplexity / ce_changed / ce_static (vq): next-frame cross-entropy in nats, over all tokens, "
                       "over tokens that differ from the previous frame and over those that do not."]
    result["markdown"] = to_markdown(result)
    return result


__all__ = ["evaluate", "evaluate_loss", "next_frame_cross_entropy", "to_markdown", "policy_errors",
           "copy_baseline"]
