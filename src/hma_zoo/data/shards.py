"""Episode and token shards: validated writing, checked reading, and the dataset manifest.

Layout of a dataset folder (see docs/data_format.md)::

    manifest.json                      kind, image size, embodiments + action statistics, shard list, split
    train/<embodiment>-00000.tar       WebDataset shards, one embodiment per shard, one sample per episode
    val/<embodiment>-00000.tar

A sample (tar members sharing the key ``<episode_id>``): ``.json`` (record), ``.frames.npy`` or ``.frames.mp4``
(or ``.tokens.npy`` in token shards), ``.actions.npy`` and optionally ``.proprio.npy``, ``.reward.npy``,
``.success.npy``, then ``.json.crc``. The JSON record stores a CRC32 of every member and ``.json.crc`` the CRC32 of
the record, so a damaged member or record is detected on read (datasets written before ``.json.crc`` existed have
no ``record_checksums`` in their manifest and are read with their records unchecked).

Reading a damaged shard or member either raises :class:`ShardError` (``on_error="raise"``, the default) or skips
the episode (or the rest of an unreadable shard), logs a warning and counts it in :class:`ReadStats`
(``on_error="skip"``). It is never silently wrong. Given what the manifest lists for a shard
(:class:`ShardExpectation`, or the ``keep`` ids), the reader also checks that every listed episode was read and that
each episode's contents match the manifest; disagreements are :class:`DataError` (a ``ShardError`` and a
``ValueError``) naming the shard, the episode and the field.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hma_zoo.data.codec import mp4_bytes, mp4_load, npy_bytes, npy_load
from hma_zoo.data.schema import (
    FORMAT_VERSION,
    ActionStats,
    EmbodimentInfo,
    Episode,
    EpisodeError,
    validate_episode,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ARRAY_FIELDS = ("actions", "proprio", "reward", "success")
RECORD_CRC = "json.crc"  # member holding the CRC32 of the .json record, as decimal ASCII
OnError = Literal["raise", "skip"]


class ShardError(RuntimeError):
    """A shard or one of its members cannot be read or fails its checks."""


def is_url(path: str) -> bool:
    return "://" in str(path) or str(path).startswith("pipe:")


def join(root: str, rel: str) -> str:
    """Join a dataset root (local folder or URL prefix) and a relative shard path."""
    return f"{str(root).rstrip('/')}/{rel}" if is_url(root) else str(Path(root) / rel)


def open_stream(url: str) -> Any:
    """Open a local path or any URL WebDataset understands (``http(s)://``, ``pipe:``, ``gs://`` ...) for reading."""
    if not is_url(url):
        return open(url, "rb")
    from webdataset.gopen import gopen

    return gopen(url, "rb")


# ----------------------------------------------------------------------------------------------------- writing
def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), 0, 0o644, "hma", "hma"
    tar.addfile(ti, io.BytesIO(data))


class DatasetWriter:
    """Write validated episodes (or token episodes) into per-embodiment, per-split WebDataset shards.

    Args:
        out_dir: dataset folder (created).
        embodiments: the embodiments this dataset holds; any other name is refused.
        image_size: ``(H, W)`` every episode's frames must have.
        encoding: ``"npy"`` (raw uint8, fastest to read) or ``"mp4"`` (H.264 via PyAV, ~20x smaller).
        episodes_per_shard: episodes per ``.tar`` before a new shard starts.
        kind: ``"episodes"`` (frames) or ``"tokens"`` (pre-tokenised; ``token_info`` describes them).
        token_info: for token shards: ``{"kind": "vq"|"kl", "shape": per-frame shape, "dtype": ..., "tokenizer":
            name, "spec": TokenizerSpec dict}``.
        shard_prefix: prefix of shard file names (parallel builders use one per task so names never collide).

    Use as a context manager or call :meth:`close`, which writes ``manifest.json``. Parallel builders call
    :meth:`finish` in each worker instead and merge the partial manifests with :func:`write_manifest`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        embodiments: Sequence[EmbodimentInfo],
        image_size: tuple[int, int] = (64, 64),
        encoding: Literal["npy", "mp4"] = "npy",
        episodes_per_shard: int = 64,
        kind: Literal["episodes", "tokens"] = "episodes",
        token_info: dict[str, Any] | None = None,
        shard_prefix: str = "",
    ) -> None:
        if encoding not in ("npy", "mp4"):
            raise ValueError(f"encoding must be 'npy' or 'mp4', got {encoding!r}")
        if kind == "tokens" and not token_info:
            raise ValueError("token shards need token_info (kind, shape, dtype, tokenizer)")
        self.out_dir = Path(out_dir)
        self.embodiments = {e.name: e for e in embodiments}
        self.image_size = tuple(int(s) for s in image_size)
        self.encoding, self.kind, self.token_info = encoding, kind, token_info
        self.episodes_per_shard, self.shard_prefix = int(episodes_per_shard), shard_prefix
        self._open: dict[tuple[str, str], tuple[tarfile.TarFile, Path, dict[str, Any]]] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._shards: list[dict[str, Any]] = []
        self._stats = {n: {"train": ActionStats(e.action_dim), "all": ActionStats(e.action_dim)}
                       for n, e in self.embodiments.items()}
        self._ids: set[str] = set()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._close_shards()

    def _shard_for(self, split: str, embodiment: str) -> tuple[tarfile.TarFile, dict[str, Any]]:
        key = (split, embodiment)
        if key in self._open and len(self._open[key][2]["episodes"]) >= self.episodes_per_shard:
            self._finish_shard(key)
        if key not in self._open:
            n = self._counters.get(key, 0)
            self._counters[key] = n + 1
            rel = f"{split}/{self.shard_prefix}{embodiment}-{n:05d}.tar"
            path = self.out_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tar.tmp")
            record = {"path": rel, "split": split, "embodiment": embodiment, "episodes": []}
            self._open[key] = (tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT), path, record)  # noqa: SIM115
        return self._open[key][0], self._open[key][2]

    def _finish_shard(self, key: tuple[str, str]) -> None:
        tar, path, record = self._open.pop(key)
        tar.close()
        os.replace(path.with_suffix(".tar.tmp"), path)
        self._shards.append(record)

    def _close_shards(self) -> None:
        for key in list(self._open):
            self._finish_shard(key)

    def abort(self) -> None:
        """Delete every shard this writer wrote (finished or ``*.tar.tmp``), so a failed import leaves nothing."""
        for tar, path, _ in self._open.values():
            tar.close()
            path.with_suffix(".tar.tmp").unlink(missing_ok=True)
        self._open.clear()
        for record in self._shards:
            (self.out_dir / record["path"]).unlink(missing_ok=True)
        self._shards.clear()
        for split in ("train", "val"):
            folder = self.out_dir / split
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def add(self, ep: Episode, split: str = "train") -> dict[str, Any]:
        """Validate and write one episode to ``split`` (``"train"`` or ``"val"``); returns its JSON record."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        token_shape = tuple(self.token_info["shape"]) if self.kind == "tokens" else None
        validate_episode(ep, self.embodiments, self.image_size if self.kind == "episodes" else None, token_shape)
        if (self.kind == "tokens") != (ep.tokens is not None):
            field_name = "tokens" if self.kind == "tokens" else "frames"
            raise EpisodeError(ep.episode_id, field_name, f"a {self.kind} dataset needs {field_name}")
        if ep.episode_id in self._ids:
            raise EpisodeError(ep.episode_id, "episode_id", "is already in this dataset; episode ids must be unique")
        self._ids.add(ep.episode_id)
        info = self.embodiments[ep.embodiment]
        members: dict[str, bytes] = {}
        if ep.frames is not None:
            if self.encoding == "mp4":
                members["frames.mp4"] = mp4_bytes(ep.frames, fps=info.frame_hz)
            else:
                members["frames.npy"] = npy_bytes(ep.frames)
        else:
            members["tokens.npy"] = npy_bytes(ep.tokens.astype(self.token_info["dtype"]))
        members["actions.npy"] = npy_bytes(ep.actions.astype(np.float32))
        if ep.proprio is not None:
            members["proprio.npy"] = npy_bytes(ep.proprio.astype(np.float32))
        if ep.reward is not None:
            members["reward.npy"] = npy_bytes(ep.reward.astype(np.float32))
        if ep.success is not None:
            members["success.npy"] = npy_bytes(ep.success.astype(bool))
        record = {
            "format_version": FORMAT_VERSION, "episode_id": ep.episode_id, "embodiment": ep.embodiment,
            "action_dim": info.action_dim, "action_names": list(info.action_names), "control_hz": info.control_hz,
            "frame_hz": info.frame_hz, "stride": info.stride, "camera": info.camera, "source": info.source,
            "image_size": list(self.image_size), "num_frames": ep.num_frames, "num_actions": int(ep.actions.shape[0]),
            "split": split, "members": {k: zlib.crc32(v) for k, v in members.items()}, "meta": ep.meta,
        }
        tar, shard = self._shard_for(split, ep.embodiment)
        for name, data in members.items():
            _add_member(tar, f"{ep.episode_id}.{name}", data)
        record_bytes = json.dumps(record).encode()
        _add_member(tar, f"{ep.episode_id}.json", record_bytes)
        _add_member(tar, f"{ep.episode_id}.{RECORD_CRC}", str(zlib.crc32(record_bytes)).encode())
        shard["episodes"].append([ep.episode_id, ep.num_frames, int(ep.actions.shape[0])])
        self._stats[ep.embodiment]["all"].update(ep.actions)
        if split == "train":
            self._stats[ep.embodiment]["train"].update(ep.actions)
        return record

    def finish(self) -> dict[str, Any]:
        """Close open shards and return this writer's partial manifest (for :func:`write_manifest`)."""
        self._close_shards()
        return {
            "kind": self.kind, "image_size": list(self.image_size), "encoding": self.encoding,
            "token_info": self.token_info, "embodiments": {n: e.to_dict() for n, e in self.embodiments.items()},
            "stats": {n: {k: s.to_dict() for k, s in d.items()} for n, d in self._stats.items()},
            "shards": self._shards, "record_checksums": True,
        }

    def close(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close shards and write ``manifest.json``; returns the manifest."""
        return write_manifest(self.out_dir, [self.finish()], extra=extra)


def write_manifest(out_dir: str | os.PathLike, partials: Sequence[dict[str, Any]],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge partial manifests (from :meth:`DatasetWriter.finish`) into ``out_dir/manifest.json``.

    Per embodiment it records the stored stride, control/frame frequencies, counts of episodes, frames and
    actions per split, and action mean/std/min/max over the train split (all episodes if train is empty).
    """
    if not partials:
        raise ValueError("write_manifest needs at least one partial manifest")
    first = partials[0]
    embodiments: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, ActionStats]] = {}
    shards: list[dict[str, Any]] = []
    for p in partials:
        for key in ("kind", "image_size", "encoding"):
            if p[key] != first[key]:
                raise ValueError(f"cannot merge partial manifests with different {key}: {p[key]} vs {first[key]}")
        for name, e in p["embodiments"].items():
            if name in embodiments and embodiments[name] != e:
                raise ValueError(f"embodiment {name!r} is declared differently by two writers: {embodiments[name]} "
                                 f"vs {e}")
            embodiments[name] = e
            acc = stats.setdefault(name, {"train": ActionStats(e["action_dim"]), "all": ActionStats(e["action_dim"])})
            for k in ("train", "all"):
                acc[k].merge(ActionStats.from_dict(e["action_dim"], p["stats"][name][k]))
        shards.extend(p["shards"])
    shards.sort(key=lambda s: s["path"])
    emb_out = {}
    for name, e in sorted(embodiments.items()):
        info = EmbodimentInfo.from_dict(e)
        mine = [s for s in shards if s["embodiment"] == name]
        counts = {sp: {"episodes": sum(len(s["episodes"]) for s in mine if s["split"] == sp),
                       "frames": sum(x[1] for s in mine if s["split"] == sp for x in s["episodes"]),
                       "actions": sum(x[2] for s in mine if s["split"] == sp for x in s["episodes"])}
                  for sp in ("train", "val")}
        acc = stats[name]["train"] if stats[name]["train"].count else stats[name]["all"]
        st = acc.to_dict()
        emb_out[name] = {**info.to_dict(), "stride": info.stride, "counts": counts,
                         "action_stats": {k: st[k] for k in ("count", "mean", "std", "min", "max", "m2")},
                         "stats_split": "train" if stats[name]["train"].count else "all"}
    manifest = {
        "format_version": FORMAT_VERSION, "kind": first["kind"], "image_size": first["image_size"],
        "encoding": first["encoding"], "token_info": first["token_info"],
        "record_checksums": all(p.get("record_checksums", False) for p in partials), "embodiments": emb_out,
        "shards": shards, **(extra or {}),
    }
    return save_manifest(out_dir, manifest)


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """``"crc32:XXXXXXXX"`` of the manifest's canonical JSON (sorted keys, no spaces) without ``checksum`` and
    ``root``; stored as the manifest's ``checksum``."""
    body = {k: v for k, v in manifest.items() if k not in ("checksum", "root")}
    return f"crc32:{zlib.crc32(json.dumps(body, sort_keys=True, separators=(',', ':')).encode()):08x}"


def save_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``out_dir/manifest.json`` atomically with its ``checksum`` (and ``record_checksums`` as given);
    returns the manifest written (without ``root``)."""
    manifest = {k: v for k, v in manifest.items() if k not in ("checksum", "root")}
    manifest["checksum"] = manifest_checksum(manifest)
    path = Path(out_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return manifest


def resave_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """Re-save a local ``manifest.json`` edited by hand, so that its ``checksum`` matches its new contents."""
    path = Path(root) / MANIFEST
    return save_manifest(root, json.loads(path.read_text()))


def load_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """Read ``manifest.json`` of a dataset folder or URL prefix, with a clear error when it is missing."""
    root = str(root)
    url = join(root, MANIFEST)
    try:
        with open_stream(url) as f:
            manifest = json.loads(f.read())
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"no {MANIFEST} in {root!r}: is this a dataset folder? Build one with `hma-zoo data build` or an importer"
        ) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{url}: not valid JSON ({exc}); the manifest is damaged: restore it or rebuild the "
                         "dataset") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{url}: a manifest is a JSON object, this is a {type(manifest).__name__}; restore it or "
                         "rebuild the dataset")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{url}: format_version {manifest.get('format_version')!r} is not supported "
                         f"(this hma_zoo reads {FORMAT_VERSION})")
    checked = "checksum" in manifest or manifest.get("record_checksums")  # written with one: it must agree
    if checked and manifest.get("checksum") != manifest_checksum(manifest):
        problem = "has no checksum, though it was written with one" if "checksum" not in manifest else \
            "fails its checksum"
        raise ValueError(
            f"{url} {problem}: it was damaged or edited after it was written. Restore it; if you edited it on "
            f"purpose, re-save it with `python -c \"from hma_zoo.data.shards import resave_manifest; "
            f"resave_manifest('{root}')\"`")
    manifest["root"] = root
    return manifest


# ----------------------------------------------------------------------------------------------------- reading
@dataclass
class ReadStats:
    """Counts of what a reader skipped with ``on_error="skip"`` (first messages kept for the report).

    ``skipped_episodes``: episodes present in a shard but damaged or not listed in the manifest; ``missing_episodes``:
    episodes the manifest lists that the shard does not hold (truncated or rewritten shard); ``skipped_shards``:
    shards (or the rest of shards) that cannot be read, and empty shards.
    """

    episodes: int = 0
    skipped_episodes: int = 0
    skipped_shards: int = 0
    missing_episodes: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> int:
        """Everything skipped or missing: ``skipped_episodes + missing_episodes + skipped_shards``."""
        return self.skipped_episodes + self.missing_episodes + self.skipped_shards

    @classmethod
    def total(cls, parts: Sequence[ReadStats]) -> ReadStats:
        """The sum of several readers' counts (e.g. every DataLoader worker's), with their first messages."""
        out = cls()
        for p in parts:
            out.episodes += p.episodes
            out.skipped_episodes += p.skipped_episodes
            out.skipped_shards += p.skipped_shards
            out.missing_episodes += p.missing_episodes
            out.messages += p.messages[: max(0, 20 - len(out.messages))]
        return out

    def note(self, msg: str, shard: bool = False, missing: int = 0) -> None:
        """Count one skipped episode (or a skipped shard, or ``missing`` episodes absent from a shard) and log it."""
        if missing:
            self.missing_episodes += missing
        elif shard:
            self.skipped_shards += 1
        else:
            self.skipped_episodes += 1
        if len(self.messages) < 20:
            self.messages.append(msg)
        log.warning("skipping damaged data (%d episodes, %d missing episodes, %d shards so far): %s",
                    self.skipped_episodes, self.missing_episodes, self.skipped_shards, msg)


class DataError(ShardError, ValueError):
    """What a shard holds disagrees with the manifest or with the format: a missing, extra or duplicate episode, an
    empty shard, or an episode whose contents are wrong (NaN/inf, dtype, shape, width or length).

    It is a :class:`ShardError` (so ``on_error`` applies to it) and a ``ValueError``. Attributes: ``shard`` (URL),
    ``episode_id`` and ``field_name`` (``None`` for shard-level problems) and ``missing`` (episode ids the manifest
    lists but the shard lacks).
    """

    def __init__(self, message: str, *, shard: str = "?", episode_id: str | None = None,
                 field_name: str | None = None, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.shard, self.episode_id, self.field_name, self.missing = shard, episode_id, field_name, list(missing)


def _data_error(shard: str, problem: str, episode_id: str | None = None, field_name: str | None = None,
                missing: Sequence[str] = ()) -> DataError:
    where = f"shard {shard}"
    if episode_id is not None:
        where += f", episode {episode_id!r}"
    if field_name is not None:
        where += f", field {field_name!r}"
    return DataError(f"{where}: {problem}", shard=shard, episode_id=episode_id, field_name=field_name,
                     missing=missing)


def _with_hint(exc: ShardError, what: str) -> ShardError:
    """Append the ``on_error='skip'`` hint to ``exc``'s message, keeping its class and attributes."""
    exc.args = (f"{exc}. Pass on_error='skip' to skip and count damaged {what}",)
    return exc


@dataclass(frozen=True)
class ShardExpectation:
    """What the manifest says one shard holds; :func:`iter_episodes` checks what it reads against it.

    Every field is optional: ``None`` means "not known", and the episode is then checked against its own JSON record
    only (which the reader always does).

    Args:
        episodes: ``{episode_id: stored frames}`` as the manifest lists them for this shard. Every listed episode
            (within ``keep``, when given) must be read, no other may appear, and the frame counts must agree.
        embodiment: the shard's embodiment.
        action_dim: the embodiment's action dimension (width of a stored ``actions`` row; a stored row is one
            control step, not a chunk of ``stride`` steps).
        stride: the embodiment's stored stride (control steps per stored frame).
        image_size: ``(H, W)`` of episode frames.
        kind: ``"episodes"`` (frames) or ``"tokens"``.
        token_shape: per-frame shape of token arrays.
        token_dtype: dtype of token arrays (e.g. ``"uint16"``, ``"float16"``).
        record_checksums: every sample must have a ``.json.crc`` member (the manifest's ``record_checksums``; a
            present one is always verified, an absent one is an error only when this is true).
    """

    episodes: Mapping[str, int] | None = None
    embodiment: str | None = None
    action_dim: int | None = None
    stride: int | None = None
    image_size: tuple[int, int] | None = None
    kind: str | None = None
    token_shape: tuple[int, ...] | None = None
    token_dtype: str | None = None
    record_checksums: bool = False

    @classmethod
    def for_embodiment(cls, manifest: dict[str, Any], name: str) -> ShardExpectation:
        """What every shard of embodiment ``name`` in ``manifest`` must hold (no episode list)."""
        emb = manifest.get("embodiments", {}).get(name)
        if emb is None:
            raise DataError(f"{manifest.get('root', 'the manifest')}: shards of embodiment {name!r} are listed but "
                            f"the manifest does not declare it (it declares {sorted(manifest.get('embodiments', {}))})")
        kind = manifest.get("kind")
        token_info = manifest.get("token_info") or {}
        image_size = manifest.get("image_size")
        return cls(
            embodiment=name, action_dim=int(emb["action_dim"]), stride=int(emb["stride"]) if "stride" in emb else None,
            image_size=(int(image_size[0]), int(image_size[1])) if kind == "episodes" and image_size else None,
            kind=kind, token_shape=tuple(int(s) for s in token_info["shape"]) if token_info.get("shape") else None,
            token_dtype=token_info.get("dtype"), record_checksums=bool(manifest.get("record_checksums", False)),
        )

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], shard: dict[str, Any]) -> ShardExpectation:
        """The expectation for ``shard`` (one entry of ``manifest["shards"]``) of ``manifest``."""
        return replace(cls.for_embodiment(manifest, shard["embodiment"]),
                       episodes={str(x[0]): int(x[1]) for x in shard["episodes"]})


def _record_info(key: str, rec: dict[str, Any], url: str, expect: ShardExpectation | None) -> EmbodimentInfo:
    """The embodiment the record declares, checked against the manifest's expectation."""
    try:
        info = EmbodimentInfo(rec["embodiment"], rec["action_dim"], rec["control_hz"], rec["frame_hz"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _data_error(url, f"the .json record does not describe a valid embodiment ({exc})", key, "json") from exc
    if int(rec.get("stride", info.stride)) != info.stride:
        raise _data_error(url, f"the record's stride {rec.get('stride')} disagrees with its control_hz / frame_hz "
                          f"({info.stride})", key, "stride")
    if expect is None:
        return info
    checks = [("embodiment", rec["embodiment"], expect.embodiment), ("action_dim", info.action_dim, expect.action_dim),
              ("stride", info.stride, expect.stride)]
    for name, got, want in checks:
        if want is not None and got != want:
            raise _data_error(url, f"the record says {got!r} but the manifest says {want!r}", key, name)
    return info


def decode_sample(key: str, members: dict[str, bytes], url: str = "?",
                  expect: ShardExpectation | None = None) -> Episode:
    """Check one sample's members and decode them to an :class:`Episode`.

    Checks: the CRC32 of every member; the decoded lengths against the JSON record; the record against ``expect``
    (embodiment, action width, stride, frame count); and the contents with the same rules as writing
    (:func:`~hma_zoo.data.schema.validate_episode`): frames uint8 ``[F, H, W, 3]`` of the dataset's image size,
    tokens of the dataset's per-frame shape and dtype, actions float ``[K, action_dim]`` with ``K`` in
    ``{(F-1)*stride, F*stride}``, no NaN/inf in any float array, proprio/reward/success lengths.

    Raises :class:`ShardError` naming the shard, the episode and the member on a damaged member, and
    :class:`DataError` (a ``ShardError`` and ``ValueError``) naming the shard, the episode and the field on wrong
    contents.
    """
    where = f"shard {url}, episode {key!r}"
    if "json" not in members:
        raise ShardError(f"{where}: the .json record is missing")
    if RECORD_CRC in members:
        try:
            want = int(members[RECORD_CRC].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ShardError(f"{where}: member {RECORD_CRC!r} (the record's CRC32) is damaged") from None
        if zlib.crc32(members["json"]) != want:
            raise ShardError(f"{where}: the .json record fails its CRC32 check (damaged)")
    elif expect is not None and expect.record_checksums:
        raise _data_error(url, f"has no {RECORD_CRC!r} member, though the manifest says every record has one "
                          "(record_checksums)", key, RECORD_CRC)
    try:
        rec = json.loads(members["json"])
    except ValueError as exc:
        raise ShardError(f"{where}: the .json record is not valid JSON ({exc})") from exc
    if not isinstance(rec, dict) or not isinstance(rec.get("members"), dict):
        raise _data_error(url, "the .json record has no 'members' table", key, "json")
    for name, crc in rec["members"].items():
        if name not in members:
            raise ShardError(f"{where}: member {name!r} is missing")
        if zlib.crc32(members[name]) != crc:
            raise ShardError(f"{where}: member {name!r} fails its CRC32 check (damaged)")
    if rec.get("episode_id") != key:
        raise _data_error(url, f"the record names episode {rec.get('episode_id')!r}", key, "episode_id")
    info = _record_info(key, rec, url, expect)
    arrays: dict[str, Any] = {}
    try:
        for name in rec["members"]:
            base, ext = name.rsplit(".", 1)
            if ext == "mp4":
                arrays[base] = mp4_load(members[name])
            elif ext == "npy":
                arrays[base] = npy_load(members[name])
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a damaged member
        raise ShardError(f"{where}: cannot decode member {name!r}: {exc}") from exc
    visual = arrays.get("frames", arrays.get("tokens"))
    if visual is None or "actions" not in arrays:
        raise _data_error(url, "needs frames (or tokens) and actions", key, "frames" if visual is None else "actions")
    for name, arr in (("tokens" if "tokens" in arrays else "frames", visual), ("actions", arrays["actions"])):
        if arr.ndim < 2:
            raise _data_error(url, f"has shape {arr.shape}; expected one row per frame / control step", key, name)
    listed = expect.episodes.get(key) if expect is not None and expect.episodes is not None else None
    if listed is not None and visual.shape[0] != listed:
        raise _data_error(url, f"has {visual.shape[0]} frames but the manifest lists {listed}", key, "frames")
    if visual.shape[0] != rec.get("num_frames") or arrays["actions"].shape[0] != rec.get("num_actions"):
        raise _data_error(url, f"decoded {visual.shape[0]} frames / {arrays['actions'].shape[0]} actions but the "
                          f"record says {rec.get('num_frames')} / {rec.get('num_actions')}", key,
                          "frames" if visual.shape[0] != rec.get("num_frames") else "actions")
    kind = expect.kind if expect is not None else None
    if kind is not None and ("tokens" if "tokens" in arrays else "episodes") != kind:
        raise _data_error(url, f"holds {'tokens' if 'tokens' in arrays else 'frames'} but the manifest says this is "
                          f"a {kind!r} dataset", key, "tokens" if kind == "tokens" else "frames")
    ep = Episode(episode_id=rec["episode_id"], embodiment=rec["embodiment"], actions=arrays["actions"],
                 frames=arrays.get("frames"), tokens=arrays.get("tokens"), proprio=arrays.get("proprio"),
                 reward=arrays.get("reward"), success=arrays.get("success"), meta=rec)
    image_size = expect.image_size if expect is not None and expect.image_size is not None else rec.get("image_size")
    token_shape = expect.token_shape if expect is not None else None
    try:
        validate_episode(ep, {info.name: info}, tuple(int(x) for x in image_size) if image_size else None, token_shape)
    except EpisodeError as exc:
        raise _data_error(url, str(exc).split(": ", 1)[-1], key, exc.field_name) from None
    except (TypeError, ValueError) as exc:  # a malformed record field (e.g. image_size)
        raise _data_error(url, f"the .json record is malformed ({exc})", key, "json") from None
    if ep.tokens is not None and expect is not None and expect.token_dtype is not None \
            and ep.tokens.dtype != np.dtype(expect.token_dtype):
        raise _data_error(url, f"has dtype {ep.tokens.dtype} but the manifest says {expect.token_dtype}", key,
                          "tokens")
    return ep


class _StrictTarInfo(tarfile.TarInfo):
    """Header parsing that refuses what ``tarfile`` silently takes as the end of the archive.

    After the first member ``tarfile`` stops without error at a header that fails its checksum (a flipped bit), is
    cut short, or is missing (data cut between members, no end-of-archive blocks). Each of these is raised here as a
    ``tarfile.SubsequentHeaderError``, which ``tarfile`` turns into a ``ReadError``. A zero block (the regular end
    of the archive) still ends it.
    """

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        """The next header of ``tarfile_``, or ``SubsequentHeaderError`` where ``tarfile`` would stop silently."""
        try:
            return super().fromtarfile(tarfile_)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError, tarfile.EmptyHeaderError) as exc:
            if tarfile_.offset == 0:
                raise  # tarfile reports a bad first header itself
            problem = "the data ends without the end-of-archive marker (truncated)" \
                if isinstance(exc, tarfile.EmptyHeaderError) else f"bad tar header ({exc})"
            raise tarfile.SubsequentHeaderError(f"{problem} at byte {tarfile_.offset}") from None


def _iter_members(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group consecutive tar members by key (the part of the name before the first dot).

    When the archive breaks, the group read so far is yielded before the error propagates: it is complete when the
    break falls between samples, and otherwise fails its record / CRC checks in :func:`decode_sample`.
    """
    with open_stream(url) as stream, tarfile.open(fileobj=stream, mode="r|*", tarinfo=_StrictTarInfo) as tar:
        key, members = None, {}
        try:
            for ti in tar:
                if not ti.isfile():
                    continue
                base = os.path.basename(ti.name)
                k, _, suffix = base.partition(".")
                data = tar.extractfile(ti).read()
                if k != key and key is not None:
                    yield key, members
                    members = {}
                key = k
                members[suffix] = data
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            if key is not None:
                yield key, members
            raise exc
        if key is not None:
            yield key, members


def _listing(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def iter_episodes(
    url: str,
    on_error: OnError = "raise",
    stats: ReadStats | None = None,
    keep: Collection[str] | None = None,
    expect: ShardExpectation | None = None,
) -> Iterator[Episode]:
    """Stream the episodes of one shard (local path or WebDataset URL), checked member by member.

    Args:
        url: shard path or URL.
        on_error: ``"raise"`` -> :class:`ShardError` (:class:`DataError` for contents that disagree with the
            manifest or the format) on the first damaged member, unreadable shard, wrong episode or missing episode;
            ``"skip"`` -> skip the damaged episode (or the unreadable rest of the shard), count it in ``stats``.
        stats: counters updated in place.
        keep: if given, only episodes whose id is in this set are decoded (others are not decoded at all). The ids
            come from the manifest, so each of them must be found in the shard.
        expect: what the manifest says the shard holds (:meth:`ShardExpectation.from_manifest`): every listed
            episode (within ``keep``) must be found, no unlisted one may appear, and contents are checked against
            the manifest's embodiment, image size and token info.

    The comparison with ``keep`` / ``expect.episodes`` happens when the shard is exhausted; missing episodes raise
    a :class:`DataError` naming the shard and the ids (``"raise"``) or are counted in ``stats.missing_episodes``
    (``"skip"``). A shard with no member at all is an error in both modes (counted as a skipped shard).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    stats = stats if stats is not None else ReadStats()
    listed = expect.episodes if expect is not None else None
    want: list[str] | None = None
    if listed is not None:
        want = [e for e in listed if keep is None or e in keep]
    elif keep is not None:
        want = sorted(keep)
    seen: set[str] = set()
    samples, readable = 0, True
    try:
        for key, members in _iter_members(url):
            samples += 1
            if keep is not None and key not in keep:
                continue
            try:
                if key in seen:
                    raise _data_error(url, "appears twice in the shard (its members are not consecutive)", key,
                                      "episode_id")
                seen.add(key)
                if listed is not None and key not in listed:
                    raise _data_error(url, "is in the shard but not in the manifest's list for it", key, "episode_id")
                ep = decode_sample(key, members, url, expect)
            except ShardError as exc:
                if on_error == "raise":
                    raise _with_hint(exc, "episodes") from None
                stats.note(str(exc))
                continue
            stats.episodes += 1
            yield ep
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        readable = False
        msg = f"shard {url} cannot be read ({type(exc).__name__}: {exc})"
        if on_error == "raise":
            unread = [e for e in want if e not in seen] if want is not None else []
            if unread:
                msg += f"; {len(unread)} episodes the manifest lists for it were not read: {_listing(unread)}"
            raise ShardError(msg + ". Pass on_error='skip' to skip and count damaged shards") from exc
        stats.note(msg, shard=True)
    if readable and samples == 0:
        err = _data_error(url, "holds no tar members (an empty shard); rebuild it or remove it from the manifest")
        if on_error == "raise":
            raise _with_hint(err, "shards")
        stats.note(str(err), shard=True)
    missing = [e for e in want if e not in seen] if want is not None else []
    if missing:
        err = _data_error(url, f"{len(missing)} of the {len(want)} episodes the manifest lists for it are not in "
                          f"the shard (truncated or rewritten): {_listing(missing)}", field_name="episodes",
                          missing=missing)
        if on_error == "raise":
            raise _with_hint(err, "episodes")
        stats.note(str(err), missing=len(missing))
