"""``hma-zoo data ...``: build, import, tokenize, validate and inspect datasets.

Examples::

    hma-zoo data build --mixture sim-mix-mini --out data/sim-mix-mini --workers 2
    hma-zoo data build --gym-env CartPole-v1 --episodes 20 --steps 100 --out data/cartpole --policy mod:Policy
    hma-zoo data validate data/sim-mix-mini [--skip-damaged]
    hma-zoo data stats data/sim-mix-mini
    hma-zoo data tokenize --data data/sim-mix-mini --tokenizer NAME_OR_PATH --out data/sim-mix-mini-tok
    hma-zoo data import-files --src episodes/ --out data/mine --embodiment arm --control-hz 10 [--keys ...]
    hma-zoo data import-lerobot --src path/to/lerobot_dataset --out data/lr
    hma-zoo data export-lerobot --data data/pusht --out lerobot/pusht [--fps F] [--embodiment NAME] [--split all]
    hma-zoo data subset --data data/sim-mix --embodiments dmc_hopper --out data/heldout-dmc_hopper
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger(__name__)


def _number(text: str) -> float:
    """A float or a fraction such as ``1/257`` (for ``--frame-scale``)."""
    from fractions import Fraction

    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 255, 0.5 or 1/257)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hma-zoo data", description="Build, import, tokenize and inspect datasets.")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="generate a dataset from simulators")
    b.add_argument("--mixture", help="named mixture: sim-mix, sim-mix-mini, sim-mix-test")
    b.add_argument("--gym-env", help="instead of a mixture: any gymnasium id that renders rgb_array")
    b.add_argument("--policy", help="'module:PolicyClass' for --gym-env (default: smoothed random actions)")
    b.add_argument("--name", help="embodiment name for --gym-env (default: derived from the id)")
    b.add_argument("--steps", type=int, default=100, help="control steps per episode (--gym-env)")
    b.add_argument("--stride", type=int, default=1, help="control steps per frame (--gym-env)")
    b.add_argument("--out", required=True, help="output dataset folder")
    b.add_argument("--workers", type=int, default=2, help="simulator processes run in parallel (default 2)")
    b.add_argument("--episodes", type=int, help="episodes per embodiment (overrides the mixture's)")
    b.add_argument("--image-size", type=int, default=64, help="side of the square rendered frames (default 64 pixels)")
    b.add_argument("--encoding", choices=["npy", "mp4"], default="npy",
                   help="how frames are stored in the shards: npy (raw uint8, exact; default) or mp4 (H.264, smaller)")
    b.add_argument("--seed", type=int, default=0, help="seed of the episodes' resets and actions (default 0)")
    b.add_argument("--val-fraction", type=float, default=None,
                   help="share of episodes in the val split (default: the mixture's own, else 0.1)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace the dataset (or the output of an interrupted build) in --out: deletes manifest.json, "
                        "train/, val/ and .build/ there, nothing else")
    b.add_argument("--resume", action="store_true",
                   help="finish an interrupted build into --out with the same options: only missing chunks are built")
    b.add_argument("--list", action="store_true", help="list the named mixtures and exit")

    v = sub.add_parser("validate", help="read every episode of a dataset and check it against the manifest")
    v.add_argument("data", help="dataset folder (holds manifest.json) or its URL")
    v.add_argument("--skip-damaged", action="store_true", help="count damaged episodes instead of failing")

    s = sub.add_parser("stats", help="print the manifest's per-embodiment table")
    s.add_argument("data", help="dataset folder (holds manifest.json) or its URL")
    s.add_argument("--json", action="store_true", help="print the manifest (without its shard list) as JSON instead")

    t = sub.add_parser("tokenize", help="write pre-tokenised token shards with a tokenizer")
    t.add_argument("--data", required=True, help="episode (frame) dataset folder to tokenise")
    t.add_argument("--tokenizer", required=True, help="registered tokenizer name or saved directory / hub id")
    t.add_argument("--out", required=True, help="new token dataset folder")
    t.add_argument("--batch-frames", type=int, default=256, help="frames per tokenizer call (default 256)")
    t.add_argument("--device", default="cpu", help="torch device of the tokenizer, e.g. cpu or cuda (default cpu)")
    t.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")

    f = sub.add_parser("import-files", help="import a folder of per-episode .npz/.npy/.hdf5 files")
    f.add_argument("--src", required=True, help="folder of episode files, one episode per file (or one robomimic "
                                                "HDF5 with --robomimic)")
    f.add_argument("--out", required=True, help="new dataset folder")
    f.add_argument("--embodiment", required=True, help="name of the robot the episodes come from (its action "
                                                       "space and camera)")
    f.add_argument("--control-hz", type=float, required=True, help="control steps per second of the actions")
    f.add_argument("--stride", type=int, default=1,
                   help="keep every N-th frame of the files, which hold one frame per control step (unless "
                        "--source-stride says otherwise); all actions are kept, the stored stride is "
                        "source-stride x stride")
    f.add_argument("--source-stride", type=int, default=1,
                   help="control steps per frame in the files (default 1): T frames then take (T-1)*N or T*N "
                        "actions, one per control step; other counts are refused")
    f.add_argument("--frames-key", default="frames", help="key of the frames [T, H, W, 3] (default frames)")
    f.add_argument("--actions-key", default="actions", help="key of the actions [N, A] (default actions)")
    f.add_argument("--proprio-key", "--state-key", dest="proprio_key", default=None,
                   help="key of the per-frame state (stored as proprio; the state probe regresses it)")
    f.add_argument("--reward-key", default=None, help="key of the per-action reward")
    f.add_argument("--success-key", default=None, help="key of the per-action success flag (0/1 or bool)")
    f.add_argument("--last-frame-key", default=None,
                   help="key of a final observation stored apart from the frames (T+1 frames for T actions); it "
                        "is appended to the frames")
    f.add_argument("--frame-scale", type=_number, default=None,
                   help="multiply non-uint8 frames by this before rounding to uint8, e.g. 255 for floats in [0, 1] "
                        "or 1/257 for uint16 (without it such frames are refused)")
    f.add_argument("--image-size", type=int, default=64,
                   help="side of the square frames stored, in pixels; frames are resized to it (default 64)")
    f.add_argument("--robomimic", action="store_true", help="one HDF5 with data/demo_*/ groups (robomimic)")
    f.add_argument("--val-fraction", type=float, default=0.1, help="share of episodes in the val split, in [0, 1)")
    f.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")

    sb = sub.add_parser("subset", help="a dataset of some embodiments of another, sharing its shards (no copy)")
    sb.add_argument("--data", required=True, help="source dataset folder")
    sb.add_argument("--embodiments", nargs="+", required=True, help="the embodiments to keep (names in the source's "
                                                                    "manifest)")
    sb.add_argument("--out", required=True, help="new dataset folder (holds only manifest.json)")

    r = sub.add_parser("import-lerobot", help="import a LeRobot dataset on disk (v2 / v3: parquet + mp4)")
    r.add_argument("--src", required=True, help="LeRobot dataset folder (meta/info.json, data/, videos/)")
    r.add_argument("--out", required=True, help="new dataset folder")
    r.add_argument("--embodiment", default=None,
                   help="embodiment name (default: the dataset's robot_type, else the folder name)")
    r.add_argument("--camera", default=None, help="video key, e.g. observation.images.top (default: first)")
    r.add_argument("--state-key", default="observation.state",
                   help="per-frame state column, stored as proprio for the state probe (default observation.state)")
    r.add_argument("--stride", type=int, default=1, help="keep every N-th frame (actions are kept at full rate)")
    r.add_argument("--image-size", type=int, default=64,
                   help="side of the square frames stored, in pixels; video frames are resized to it (default 64)")
    r.add_argument("--val-fraction", type=float, default=0.1, help="share of episodes in the val split, in [0, 1)")
    r.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")

    x = sub.add_parser("export-lerobot", help="write one embodiment of an episode dataset as a LeRobot v3.0 dataset "
                                              "(parquet + mp4; generated rollouts included)")
    x.add_argument("--data", required=True, help="episode dataset folder (not a token dataset: export the frame "
                                                 "dataset it was tokenised from)")
    x.add_argument("--out", required=True, help="new LeRobot dataset folder (must be empty or absent)")
    x.add_argument("--fps", type=float, default=None,
                   help="frames per second of the export: the dataset's frame rate (default) or that divided by a "
                        "whole number N (every N-th frame; each row then holds the N x stride control steps)")
    x.add_argument("--embodiment", default=None,
                   help="embodiment to export (required when the dataset has several; one LeRobot dataset each)")
    x.add_argument("--split", choices=["train", "val", "all"], default="all",
                   help="episodes to export (all: train first, then val; info.json lists both splits)")
    x.add_argument("--crf", type=int, default=18, help="H.264 quality of the videos, lower is better (default 18)")
    x.add_argument("--pix-fmt", choices=["yuv420p", "yuv444p"], default="yuv420p",
                   help="video pixel format: yuv420p as LeRobot's own videos (default), yuv444p keeps colour at full "
                        "resolution (small frames lose less)")
    x.add_argument("--overwrite", action="store_true", help="replace a LeRobot dataset already in --out")
    return p


def subset_dataset(data: str, embodiments: list[str], out: str) -> dict:
    """Write ``out/manifest.json`` listing only ``embodiments`` of the local dataset ``data``; its shard paths point
    into ``data`` (relative), so nothing is copied. E.g. an embodiment held out of pre-training, to fine-tune on."""
    import os
    from pathlib import Path

    from hma_zoo.data.shards import MANIFEST, is_url, load_manifest, save_manifest

    if is_url(data):
        raise ValueError(f"subset works on local datasets; {data!r} is a URL")
    manifest = load_manifest(data)
    unknown = sorted(set(embodiments) - set(manifest["embodiments"]))
    if unknown:
        raise KeyError(f"{data} has no embodiment(s) {unknown}; it has {sorted(manifest['embodiments'])}")
    dst = Path(out)
    if (dst / MANIFEST).exists() and Path(data).resolve() != dst.resolve():
        log.info("subset: replacing %s", dst / MANIFEST)
    dst.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(Path(data).resolve(), dst.resolve())
    keep = set(embodiments)
    new = dict(manifest)
    new["embodiments"] = {k: v for k, v in manifest["embodiments"].items() if k in keep}
    new["shards"] = [dict(s, path=f"{rel}/{s['path']}") for s in manifest["shards"] if s["embodiment"] in keep]
    new["subset_of"] = {"data": str(data), "embodiments": sorted(keep)}
    return save_manifest(dst, new)


def _stats_table(manifest: dict) -> str:
    head = f"{'embodiment':<20} {'A':>2} {'stride':>6} {'ctrl Hz':>8} {'frame Hz':>8} {'train ep':>8} " \
           f"{'val ep':>6} {'frames':>8}  action mean / std (first 3 dims)"
    lines = [head, "-" * len(head)]
    for name, e in manifest["embodiments"].items():
        c = e["counts"]
        st = e["action_stats"]
        ms = " ".join(f"{m:+.3g}/{s:.3g}" for m, s in zip(st["mean"][:3], st["std"][:3]))  # 3 significant digits
        lines.append(f"{name:<20} {e['action_dim']:>2} {e['stride']:>6} {e['control_hz']:>8.1f} {e['frame_hz']:>8.1f} "
                     f"{c['train']['episodes']:>8} {c['val']['episodes']:>6} "
                     f"{c['train']['frames'] + c['val']['frames']:>8}  {ms}")
    build = manifest.get("build", {})
    if build:
        lines.append(f"built in {build.get('seconds')} s with {build.get('workers')} workers, "
                     f"{build.get('bytes', 0) / 1e6:.1f} MB")
    return "\n".join(lines)


def validate_dataset(data: str, skip_damaged: bool = False) -> dict:
    """Read every episode of ``data`` and check it against the manifest (see ``iter_episodes``).

    Every shard is read with its :class:`~hma_zoo.data.shards.ShardExpectation`: each listed episode must be there
    (and no other), with the manifest's embodiment, action width, stride, frame count, image size / token info, and
    finite, well-typed arrays. Without ``skip_damaged`` the first problem raises a ``ShardError`` (or its subclass
    ``DataError``); with it, problems are counted. Returns the counts (``damaged`` is their sum; non-zero means the
    dataset is not intact).
    """
    from rich.progress import Progress

    from hma_zoo.data.shards import ReadStats, ShardError, ShardExpectation, iter_episodes, join, load_manifest

    manifest = load_manifest(data)
    if not manifest.get("shards"):
        raise ShardError(f"{data}: the manifest lists no shards")
    stats = ReadStats()
    on_error = "skip" if skip_damaged else "raise"
    with Progress() as bar:
        task = bar.add_task("validating", total=len(manifest["shards"]))
        for shard in manifest["shards"]:
            expect = ShardExpectation.from_manifest(manifest, shard)
            for _ in iter_episodes(join(data, shard["path"]), on_error=on_error, stats=stats, expect=expect):
                pass
            bar.advance(task)
    return {"episodes": stats.episodes, "skipped_episodes": stats.skipped_episodes,
            "missing_episodes": stats.missing_episodes, "skipped_shards": stats.skipped_shards,
            "damaged": stats.damaged, "messages": stats.messages}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hma-zoo data``; returns a process exit code.

    Input the command refuses (an importer's :class:`~hma_zoo.data.schema.ImporterError`, an invalid episode, an
    existing or missing folder, an unknown key) prints one line naming the file and the fix and returns 2.
    """
    from hma_zoo.data.build import BuildInterruptedError
    from hma_zoo.data.lerobot_export import ExportError
    from hma_zoo.data.schema import EpisodeError, ImporterError

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except BuildInterruptedError as exc:
        print(f"hma-zoo data build: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except (ImporterError, ExportError, EpisodeError, FileExistsError, FileNotFoundError, KeyError) as exc:
        if args.cmd not in ("build", "import-files", "import-lerobot", "export-lerobot"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"hma-zoo data {args.cmd}: error: {msg}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "build":
        from hma_zoo.data.build import build_dataset, list_mixtures, mixture_specs, mixture_val_fraction
        from hma_zoo.data.sources.base import SourceSpec

        if args.list:
            for k, d in list_mixtures().items():
                print(f"{k:<14} {d}")
            return 0
        if bool(args.mixture) == bool(args.gym_env):
            print("give exactly one of --mixture NAME or --gym-env ID", file=sys.stderr)
            return 2
        val_fraction = args.val_fraction
        if args.mixture:
            specs, name = mixture_specs(args.mixture, args.episodes), args.mixture
            if val_fraction is None:
                val_fraction = mixture_val_fraction(args.mixture)
        else:
            emb = args.name or "gym_" + "".join(c if c.isalnum() else "_" for c in args.gym_env).lower()
            specs = [SourceSpec("gym", emb, args.episodes or 20, args.steps, args.stride,
                                {"env_id": args.gym_env, "policy": args.policy})]
            name = emb
        if val_fraction is None:
            val_fraction = 0.1
        manifest = build_dataset(specs, args.out, workers=args.workers, image_size=(args.image_size,) * 2,
                                 encoding=args.encoding, seed=args.seed, val_fraction=val_fraction,
                                 overwrite=args.overwrite, name=name, resume=args.resume)
        print(_stats_table(manifest))
        return 0
    if args.cmd == "validate":
        from hma_zoo.data.shards import ShardError

        try:
            result = validate_dataset(args.data, args.skip_damaged)
        except ShardError as exc:
            print(f"INVALID: {exc}", file=sys.stderr)
            return 1
        counts = (f"{result['episodes']} episodes read, {result['skipped_episodes'] + result['missing_episodes']} "
                  f"damaged episodes ({result['missing_episodes']} of them missing from their shards) and "
                  f"{result['skipped_shards']} damaged shards skipped")
        if not result["damaged"]:
            print(f"OK: {counts}")
            return 0
        print(f"DAMAGED: {counts}")
        for m in result["messages"]:
            print(f"  {m}")
        return 1
    if args.cmd == "subset":
        manifest = subset_dataset(args.data, args.embodiments, args.out)
        print(f"{args.out}: {len(manifest['shards'])} shards of {', '.join(args.embodiments)} from {args.data}")
        return 0
    if args.cmd == "stats":
        from hma_zoo.data.shards import load_manifest

        manifest = load_manifest(args.data)
        if args.json:
            print(json.dumps({k: v for k, v in manifest.items() if k != "shards"}, indent=1))
        else:
            print(_stats_table(manifest))
        return 0
    if args.cmd == "tokenize":
        from hma_zoo.data.tokenize import tokenize_dataset

        manifest = tokenize_dataset(args.data, args.tokenizer, args.out, batch_frames=args.batch_frames,
                                    device=args.device, overwrite=args.overwrite)
        print(_stats_table(manifest))
        return 0
    if args.cmd == "import-files":
        from hma_zoo.data.sources.files import import_folder

        manifest = import_folder(args.src, args.out, embodiment=args.embodiment, control_hz=args.control_hz,
                                 stride=args.stride, frames_key=args.frames_key, actions_key=args.actions_key,
                                 proprio_key=args.proprio_key, reward_key=args.reward_key,
                                 image_size=(args.image_size,) * 2, robomimic=args.robomimic,
                                 val_fraction=args.val_fraction, overwrite=args.overwrite,
                                 source_stride=args.source_stride, success_key=args.success_key,
                                 last_frame_key=args.last_frame_key, frame_scale=args.frame_scale)
        print(_stats_table(manifest))
        return 0
    if args.cmd == "import-lerobot":
        from hma_zoo.data.sources.lerobot import import_lerobot

        manifest = import_lerobot(args.src, args.out, embodiment=args.embodiment, camera=args.camera,
                                  stride=args.stride, image_size=(args.image_size,) * 2,
                                  val_fraction=args.val_fraction, overwrite=args.overwrite, state_key=args.state_key)
        print(_stats_table(manifest))
        return 0
    if args.cmd == "export-lerobot":
        from hma_zoo.data.lerobot_export import export_lerobot

        done = export_lerobot(args.data, args.out, fps=args.fps, embodiment=args.embodiment, split=args.split,
                              overwrite=args.overwrite, crf=args.crf, pix_fmt=args.pix_fmt)
        print(f"{done['out']}: LeRobot v3.0 dataset, {done['episodes']} episodes, {done['frames']} frames, "
              f"{done['tasks']} tasks at {done['fps']} fps; camera {done['video_key']}, "
              f"{done['control_steps_per_row']} control step(s) per action row ({done['seconds']:.1f} s)")
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
