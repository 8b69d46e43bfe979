"""``hma-zoo push NAME REPO_ID [--dry-run]``: publish saved weights to the Hugging Face hub.

The exact folder to upload is built first, in a staging folder (:func:`stage`): ``config.json``,
``model.safetensors``, a ``README.md`` card rendered for the repo (:mod:`hma_zoo.cards`) and, for a world model,
the bundled ``tokenizer/`` (its config, weights and card) so that ``load_simulator("hf-hub:REPO_ID")`` works from
the one repo. The staged folder is checked (the card's front matter parses and names the library, the weights load
back) before anything is sent; then :func:`huggingface_hub.upload_folder` sends it in one commit (the repo is
created on the first push). ``--dry-run`` builds and checks the folder, prints its files and stops.
Authentication is huggingface_hub's own (``hf auth login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hma_zoo.hub import CARD_NAME, CONFIG_NAME, TOKENIZER_SUBDIR, WEIGHTS_NAME, read_config

# what a pushed card must have (datasets and model-index only when the metadata records them)
PUSH_REQUIRED_KEYS = ("library_name", "pipeline_tag", "license", "tags")


def _stage_member(src: Path, dst: Path, hub_id: str | None) -> None:
    from hma_zoo.cards import card_problems, render_card

    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src} has no {name}; is it a folder written by save_pretrained?")
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / CONFIG_NAME, dst / CONFIG_NAME)
    shutil.copy2(src / WEIGHTS_NAME, dst / WEIGHTS_NAME)
    card = render_card(read_config(src), src, hub_id)
    problems = card_problems(card, required=PUSH_REQUIRED_KEYS)
    if problems:
        raise ValueError(f"the card of {src} is not valid: {problems}")
    (dst / CARD_NAME).write_text(card)


def stage(name: str | os.PathLike, staging_dir: str | os.PathLike, repo_id: str | None = None) -> list[Path]:
    """Build in ``staging_dir`` the exact folder that :func:`push` uploads for ``name`` (a pretrained tag, a
    ``save_pretrained`` folder or a hub id) and check that it loads back; returns its files, relative and sorted.

    Raises:
        FileNotFoundError: ``name`` holds no saved weights.
        ValueError: the folder is not a world model or tokenizer of the zoo, or its card is invalid.
    """
    from hma_zoo import hub
    from hma_zoo.pretrained import resolve_pretrained

    src = resolve_pretrained(name)
    kind = read_config(src)["hma_zoo_kind"]
    if kind not in ("hma", "tokenizer"):
        raise ValueError(f"{name} holds a {kind!r}; push publishes world models and tokenizers")
    out = Path(staging_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"staging folder {out} is not empty")
    _stage_member(src, out, repo_id)
    if kind == "hma" and (src / TOKENIZER_SUBDIR / CONFIG_NAME).is_file():
        _stage_member(src / TOKENIZER_SUBDIR, out / TOKENIZER_SUBDIR, None)
    hub.load_pretrained(out, kind=kind)  # the staged files rebuild the model (finite weights, known kind)
    if (out / TOKENIZER_SUBDIR).is_dir():
        hub.load_pretrained(out / TOKENIZER_SUBDIR, kind="tokenizer")
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def push(name: str | os.PathLike, repo_id: str, *, staging_dir: str | os.PathLike | None = None,
         dry_run: bool = False, private: bool | None = None, revision: str | None = None,
         commit_message: str | None = None) -> tuple[dict[str, int], Any]:
    """Stage ``name`` (see :func:`stage`) and upload it to the model repo ``repo_id`` with
    ``huggingface_hub.upload_folder`` (creating the repo when it does not exist yet).

    Returns:
        The staged files (relative path -> bytes) and the ``CommitInfo`` of the upload (``None`` for a dry run).
    """
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(repo_id)
    if repo_id.count("/") != 1:
        raise ValueError(f"the hub repo id must be 'org/name', got {repo_id!r}")
    with tempfile.TemporaryDirectory(prefix="hma-zoo-push-") as tmp:
        folder = Path(staging_dir) if staging_dir is not None else Path(tmp) / "staged"
        files = {str(f): (folder / f).stat().st_size for f in stage(name, folder, repo_id)}
        if dry_run:
            return files, None
        kwargs = dict(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                      commit_message=commit_message or f"hma-zoo push {name}")
        try:
            info = huggingface_hub.upload_folder(**kwargs)
        except RepositoryNotFoundError:  # a first push: create the repo, then upload
            huggingface_hub.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            info = huggingface_hub.upload_folder(**kwargs)
    return files, info


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def main(argv: list[str]) -> int:
    """``hma-zoo push NAME REPO_ID [--dry-run]``: publish saved weights (with their card and bundled tokenizer)."""
    p = argparse.ArgumentParser(prog="hma-zoo push", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="what to publish: a pretrained tag (hma-vq-t64.simmix), a save_pretrained folder or "
                                "a hub id")
    p.add_argument("repo_id", help="the hub model repo to upload to, 'org/name'")
    p.add_argument("--dry-run", action="store_true", help="build and check the folder, print its files, upload nothing")
    p.add_argument("--staging-dir", default=None,
                   help="build the folder here and keep it (an empty or new folder; default: a temporary one)")
    p.add_argument("--private", action="store_true", help="create the repo private (when it does not exist yet)")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    p.add_argument("--message", default=None, help="commit message (default: 'hma-zoo push NAME')")
    args = p.parse_args(argv)
    files, info = push(args.name, args.repo_id, staging_dir=args.staging_dir, dry_run=args.dry_run,
                       private=args.private or None, revision=args.revision, commit_message=args.message)
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(files)} files to https://huggingface.co/{args.repo_id}:")
    width = max(len(f) for f in files)
    for f, size in files.items():
        print(f"  {f:<{width}}  {_size(size):>9}")
    if info is not None:
        print(f"commit: {getattr(info, 'commit_url', info)}")
    elif args.dry_run:
        print("dry run: nothing was uploaded", file=sys.stderr)
    return 0
