"""Save and load zoo members (world models, tokenizers) in the hub format: ``config.json`` + ``model.safetensors``.

Loading never unpickles: the config is JSON and the weights are safetensors. A folder may also hold a
``README.md`` model card (see :mod:`hma_zoo.cards`). Sources, in the order they are tried:

* ``local-dir:/path`` or an existing directory path;
* ``hf-hub:org/name`` or ``org/name`` (optionally ``@revision``): the local hub cache first, then the hub
  (``huggingface_hub.snapshot_download``); offline (``HF_HUB_OFFLINE=1``) only the cache is read.

Each loadable class registers a *kind* with :func:`register_kind`; ``config.json`` stores it under
``"hma_zoo_kind"`` so :func:`load_pretrained` can rebuild the right class.

World models and tokenizers also carry huggingface_hub's :class:`~huggingface_hub.ModelHubMixin` through
:class:`ZooHubMixin`: ``model.save_pretrained(dir)``, ``HMA.from_pretrained(name)`` and
``model.push_to_hub("org/name")`` are the mixin's methods writing and reading this same format (the functions here
do the work, so the never-unpickle rule and the kind dispatch hold either way).

``config.json`` also holds ``meta``, the provenance the writers record. :func:`describe` is the one reader of it
(for model cards and the pretrained table); the keys it understands:

* ``variant`` (architecture name), ``tag`` (weights tag), ``license`` (default ``apache-2.0``);
* ``data`` (dataset name; older tokenizer folders: ``data_dir``, a path);
* ``metrics`` (measured figures: name -> value, or a dict per row; older tokenizer folders: ``val``; Lightning
  exports: the ``val/*`` entries of ``final_metrics``);
* ``training`` (how it was trained; tokenizer folders: ``train``), ``tokenizer`` (the tokenizer of a world model),
  ``base_model`` (what a fine-tune started from), ``machine``, ``params``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelHubMixin
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
TOKENIZER_SUBDIR = "tokenizer"  # a world model's bundled tokenizer (see hma_zoo.pretrained)
FORMAT_VERSION = 1
DEFAULT_LICENSE = "apache-2.0"
# What a hub repo of the zoo holds: the member and, for a world model, the tokenizer bundled with it.
HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME] + [f"{TOKENIZER_SUBDIR}/{f}" for f in
                                                      (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)]

_KINDS: dict[str, tuple[Callable[[dict[str, Any]], nn.Module], Callable[[nn.Module], dict[str, Any]]]] = {}


def register_kind(
    kind: str, build: Callable[[dict[str, Any]], nn.Module], get_config: Callable[[nn.Module], dict[str, Any]]
) -> None:
    """Register how to rebuild a module of ``kind`` from its config dict and how to read that dict back."""
    _KINDS[kind] = (build, get_config)


def _kind_of(module: nn.Module) -> str:
    kind = getattr(module, "hub_kind", None)
    if kind is None or kind not in _KINDS:
        raise TypeError(
            f"{type(module).__name__} is not a registered zoo member (hub_kind={kind!r}); known kinds: {sorted(_KINDS)}"
        )
    return kind


def save_pretrained(
    module: nn.Module, directory: str | os.PathLike, *, meta: dict[str, Any] | None = None, card: str | None = None
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and ``README.md`` if ``card`` is given) to ``directory``.

    Args:
        module: a registered zoo member (it has ``hub_kind`` and a config).
        directory: target folder; created if missing. Files are written atomically (temp file + rename).
        meta: extra JSON-serialisable provenance (variant name, training data, measured metrics).
        card: model card text (Markdown) to write as ``README.md``.

    Returns:
        The folder path.
    """
    kind = _kind_of(module)
    bad = nonfinite_tensors(module.state_dict())
    if bad:
        raise FloatingPointError(f"refusing to save {type(module).__name__} to {directory}: non-finite values (NaN "
                                 f"or inf) in {bad[:5]}{' ...' if len(bad) > 5 else ''}; training diverged")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _, get_config = _KINDS[kind]
    payload = {"hma_zoo_kind": kind, "format_version": FORMAT_VERSION, "config": get_config(module), "meta": meta or {}}
    payload = json.loads(json.dumps(payload))  # the form it is read back in (lists, not tuples)
    # safetensors refuses shared storage; clone so tied or viewed tensors are stored independently.
    state = {k: v.detach().contiguous().clone().cpu() for k, v in module.state_dict().items()}
    tmpw = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmpw), metadata={"hma_zoo_kind": kind})
    payload["checksums"] = {WEIGHTS_NAME: _sha256(tmpw), "config": _config_checksum(payload)}
    tmp = out / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    # weights first: a crash between the two renames leaves a config whose checksum refuses the new weights
    tmpw.replace(out / WEIGHTS_NAME)
    tmp.replace(out / CONFIG_NAME)
    if card is not None:
        (out / CARD_NAME).write_text(card)
    return out


def resolve(name_or_path: str | os.PathLike, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
            token: str | bool | None = None, force_download: bool = False, local_files_only: bool = False) -> Path:
    """Turn ``local-dir:...``, a folder path, ``hf-hub:org/name`` or ``org/name`` into a local folder.

    A hub repo is read from the local hub cache when it is there (no network call; ``force_download`` skips the
    cache), else downloaded (``token`` for private repos; ``local_files_only`` or ``HF_HUB_OFFLINE=1``: never).
    """
    s = str(name_or_path)
    if s.startswith("local-dir:"):
        path = Path(s[len("local-dir:") :]).expanduser()
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} has no {CONFIG_NAME}; is it a folder written by save_pretrained?")
        return path
    path = Path(s).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} has no {CONFIG_NAME}; is it a folder written by save_pretrained?")
        return path
    repo_id = s[len("hf-hub:") :] if s.startswith("hf-hub:") else s
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    if repo_id.count("/") != 1:
        raise FileNotFoundError(
            f"{s!r} is neither an existing folder nor a hub repo id of the form 'org/name' (or 'hf-hub:org/name')"
        )
    from huggingface_hub import snapshot_download

    if not force_download:
        try:  # the local hub cache first: no network round trip when the weights are already there
            return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=HUB_FILES,
                                          local_files_only=True))
        except Exception as err:  # not cached (LocalEntryNotFoundError and relatives): ask the hub
            log.debug("%s is not in the local hub cache (%s); trying the hub", repo_id, err)
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=HUB_FILES,
                                   token=token, force_download=force_download, local_files_only=local_files_only)
    except Exception as err:  # offline, missing repo, no cache: say which and how to fix it
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = (
            "HF_HUB_OFFLINE is set and the repo is not in the local hub cache"
            if offline
            else "local_files_only is set and the repo is not in the local hub cache"
            if local_files_only
            else "the hub could not be reached or the repo does not exist"
        )
        raise FileNotFoundError(f"cannot load {repo_id!r}: {hint} ({type(err).__name__}: {err})") from err
    return Path(folder)


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _config_checksum(payload: dict[str, Any]) -> str:
    """CRC32 of what rebuilds the module (``hma_zoo_kind``, ``format_version``, ``config``) as canonical JSON;
    ``meta`` is left out (cards add measured metrics to it after saving)."""
    import zlib

    body = {k: payload.get(k) for k in ("hma_zoo_kind", "format_version", "config")}
    return f"crc32:{zlib.crc32(json.dumps(body, sort_keys=True, separators=(',', ':')).encode()):08x}"


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a saved zoo member (kind, config, meta); a ``ValueError`` naming the file when
    it is not valid JSON or not written by hma_zoo."""
    path = Path(folder) / CONFIG_NAME
    try:
        payload = json.loads(path.read_bytes())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({exc}): the file is damaged; download or save the model "
                         "again") from None
    if not isinstance(payload, dict) or "hma_zoo_kind" not in payload:
        raise ValueError(f"{path} was not written by hma_zoo (no 'hma_zoo_kind' key)")
    return payload


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding NaN or inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    kind: str | None = None,
    map_location: str | torch.device = "cpu",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    strict: bool = True,
    weights: bool = True,
    token: str | bool | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> nn.Module:
    """Rebuild a zoo member from a folder or hub repo and load its weights (never unpickles).

    Args:
        name_or_path: see :func:`resolve` (also ``token``, ``force_download``, ``local_files_only``).
        kind: if given, the stored kind must match (e.g. ``"hma"`` or ``"tokenizer"``).
        map_location: device for the weights.
        strict: passed to ``load_state_dict``.
        weights: ``False`` rebuilds the architecture of ``config.json`` with fresh (random) weights and reads no
            weights file (``create_model(tag, pretrained=False)``).
    """
    folder = resolve(name_or_path, revision=revision, cache_dir=cache_dir, token=token, force_download=force_download,
                     local_files_only=local_files_only)
    payload = read_config(folder)
    version = payload.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{folder}/{CONFIG_NAME} has format_version {version!r}; this hma_zoo reads up to "
                         f"{FORMAT_VERSION}: upgrade hma_zoo")
    config_path, weights_path = Path(folder) / CONFIG_NAME, Path(folder) / WEIGHTS_NAME
    checksums = payload.get("checksums")
    if checksums is not None and (not isinstance(checksums, dict) or checksums.get("config") !=
                                  _config_checksum(payload)):
        raise ValueError(f"{config_path} fails its checksum: the kind, format_version or config were damaged or "
                         "edited after saving (only 'meta' may change); download or save the model again")
    stored = payload["hma_zoo_kind"]
    if not isinstance(stored, str):
        raise ValueError(f"{config_path}: hma_zoo_kind {stored!r} is not a name; the file is damaged")
    if kind is not None and stored != kind and not stored.startswith(kind + "/"):
        raise ValueError(f"{name_or_path} holds a {stored!r}, not a {kind!r}")
    if stored not in _KINDS:
        _import_kind_modules()
    if stored not in _KINDS:
        raise ValueError(f"unknown zoo kind {stored!r} in {folder}; known kinds: {sorted(_KINDS)}")
    build, _ = _KINDS[stored]
    try:
        module = build(payload["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{config_path}: its config does not build a {stored!r} ({type(exc).__name__}: {exc}); the "
                         "file is damaged or from an incompatible hma_zoo") from exc
    module.pretrained_meta = payload.get("meta", {})  # type: ignore[attr-defined]
    if not weights:
        return module.to(map_location)
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: a damaged file
        raise ValueError(f"{weights_path} cannot be read ({type(exc).__name__}: {exc}): the file is damaged; "
                         "download or save the model again") from exc
    bad = nonfinite_tensors(state)
    if bad:
        raise ValueError(f"{folder}/{WEIGHTS_NAME} holds non-finite values (NaN or inf) in {bad[:5]}: the weights "
                         "are broken (a diverged run); re-export them from a healthy checkpoint")
    if isinstance(checksums, dict) and WEIGHTS_NAME in checksums and _sha256(weights_path) != checksums[WEIGHTS_NAME]:
        raise ValueError(f"{weights_path} fails its SHA-256 check against {config_path}: the weights were damaged "
                         "or replaced after saving; download or save the model again")
    try:
        missing, unexpected = module.load_state_dict(state, strict=strict)
    except RuntimeError as exc:  # shapes or names that do not fit the config
        raise ValueError(f"{weights_path} does not fit the architecture of {config_path}: {exc}") from exc
    if missing or unexpected:
        log.warning("loaded %s with missing=%s unexpected=%s", name_or_path, missing, unexpected)
    return module.to(map_location)


class ZooHubMixin(ModelHubMixin, library_name="hma_zoo", pipeline_tag="robotics"):  # as hma_zoo.cards names them
    """huggingface_hub's ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for zoo members, in the zoo's
    format: ``config.json`` (kind, constructor config, provenance, checksums) + ``model.safetensors`` + a model card
    rendered from the measured metadata (:func:`hma_zoo.cards.write_card`). Mixed into :class:`hma_zoo.model.HMA`
    and :class:`hma_zoo.tokenizers.Tokenizer`; a subclass names its registered ``hub_kind``.

    ::

        model.save_pretrained("my-model")                     # this module's save_pretrained(model, "my-model")
        model = HMA.from_pretrained("hma-vq-t64.simmix")      # a tag, a folder, local-dir:..., hf-hub:org/name
        model.push_to_hub("org/my-model")                     # create the repo, save, upload (one commit)

    ``from_pretrained`` goes through :func:`load_pretrained` (never unpickles; the kind stored in ``config.json``
    must be the class's), so a hub id is read from the local hub cache first and works offline once cached.
    ``push_to_hub`` uploads this module alone: a world model's bundled tokenizer travels with ``hma-zoo push``.
    """

    hub_kind: str

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's writer: :func:`save_pretrained` with the provenance this module was loaded with, then the
        card (the mixin writes no config.json or card of its own when these exist)."""
        assert isinstance(self, nn.Module)
        save_pretrained(self, save_directory, meta=getattr(self, "pretrained_meta", None))
        from hma_zoo.cards import write_card

        write_card(save_directory)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: Any,
    ) -> Any:
        """Load a saved member of this class: a pretrained tag (``"hma-vq-t64.simmix"``), a ``save_pretrained``
        folder, ``local-dir:PATH``, ``hf-hub:org/name`` or ``org/name`` (``@revision`` allowed). ``model_kwargs``:
        ``map_location`` (default ``"cpu"``) and ``strict`` of :func:`load_pretrained`.

        Raises:
            ValueError: the folder holds another kind of member (e.g. a tokenizer asked of ``HMA``).
            TypeError: it holds another class of the same kind, or an unknown keyword was given.
        """
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, **model_kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> Any:
        if model_kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected arguments {sorted(model_kwargs)}; it takes "
                            "map_location and strict (the architecture comes from config.json)")
        from hma_zoo.pretrained import pretrained_cfg, resolve_pretrained

        source: str | Path = model_id
        if pretrained_cfg(model_id) is not None:  # a tag: its folder, else its hub repo
            source = resolve_pretrained(model_id, kind=cls.hub_kind)
        module = load_pretrained(source, kind=cls.hub_kind, map_location=map_location, revision=revision,
                                 cache_dir=cache_dir, strict=strict, token=token, force_download=force_download,
                                 local_files_only=local_files_only)
        if not isinstance(module, cls):
            raise TypeError(f"{model_id} holds a {type(module).__name__}, not a {cls.__name__}; load it with "
                            f"{type(module).__name__}.from_pretrained or hma_zoo.load_pretrained")
        return module


def _dataset_name(value: Any) -> str | None:
    if value in (None, "", "None"):
        return None
    return Path(str(value).rstrip("/")).name or str(value)


def describe(payload: dict[str, Any], folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The provenance of a saved zoo member, read from its ``config.json`` ``payload`` under one set of keys.

    Every writer's keys are understood (see the module docstring), so a card or the pretrained table never says
    "not recorded" for a figure that is stored under an older name.

    Args:
        payload: the parsed ``config.json`` (:func:`read_config`).
        folder: the saved folder, if known: a folder named ``<variant>.<tag>`` names the member, and a bundled
            ``tokenizer/`` takes its tag from the world model beside it.

    Returns:
        ``name`` (``variant.tag`` or the variant), ``kind``, ``architecture``, ``tag``, ``data``, ``metrics`` (a dict,
        possibly empty), ``metrics_source`` (the meta key they came from, or ``None``), ``training``, ``tokenizer``,
        ``base_model``, ``license``, ``machine``, ``params`` and ``embodiments`` (names).
    """
    kind = payload["hma_zoo_kind"]
    meta = payload.get("meta") or {}
    config = payload.get("config") or {}
    architecture = meta.get("variant") or (config.get("arch", {}).get("name") if kind == "tokenizer" else None)
    tag = meta.get("tag")
    name = f"{architecture}.{tag}" if architecture and tag else architecture
    if folder is not None:
        folder = Path(folder)
        parent_cfg = folder.parent / CONFIG_NAME
        if architecture and folder.name.startswith(architecture + "."):
            name, tag = folder.name, folder.name[len(architecture) + 1 :]
        elif folder.name == TOKENIZER_SUBDIR and parent_cfg.is_file() and architecture:
            bundled_from = Path(str(json.loads(parent_cfg.read_text()).get("meta", {}).get("tokenizer", ""))).name
            if bundled_from.startswith(architecture + "."):
                name, tag = bundled_from, bundled_from[len(architecture) + 1 :]
        elif name is None:
            name = folder.name
    metrics, source = meta.get("metrics"), "metrics"
    if not metrics and meta.get("val"):
        metrics, source = meta["val"], "val"
    if not metrics and meta.get("final_metrics"):
        final = meta["final_metrics"]
        metrics, source = {k[len("val/") :]: v for k, v in final.items() if k.startswith("val/")}, "final_metrics"
    if kind == "hma":
        embodiments = [e["name"] for e in config.get("embodiments", [])]
    else:  # a tokenizer's per-embodiment rows
        embodiments = [k for k, v in (metrics or {}).items() if isinstance(v, dict) and k != "all"]
    tokenizer = meta.get("tokenizer")
    return {
        "name": name or kind,
        "kind": kind,
        "architecture": architecture,
        "tag": tag,
        "data": _dataset_name(meta.get("data") or meta.get("data_dir")),
        "eval_data": _dataset_name(meta.get("eval_data")) if meta.get("eval_data") else None,
        "metrics": dict(metrics or {}),
        "metrics_source": source if metrics else None,
        "training": meta.get("training") or meta.get("train"),
        "tokenizer": Path(str(tokenizer)).name if tokenizer else None,
        "base_model": meta.get("base_model"),
        "license": meta.get("license") or DEFAULT_LICENSE,
        "machine": meta.get("machine"),
        "params": meta.get("params"),
        "embodiments": embodiments,
    }


def _import_kind_modules() -> None:
    """Import the modules that register kinds (done lazily so ``import hma_zoo.hub`` stays light)."""
    import importlib

    for mod in ("hma_zoo.model.hma", "hma_zoo.tokenizers", "hma_zoo.policy.bc", "hma_zoo.policy.judge"):
        try:
            importlib.import_module(mod)
        except ImportError as err:  # pragma: no cover - only when a part is missing
            log.debug("could not import %s: %s", mod, err)
