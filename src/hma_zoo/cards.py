"""Model cards rendered from what was measured, never typed by hand.

A card is ``huggingface_hub.ModelCard`` Markdown: YAML front matter (:class:`~huggingface_hub.ModelCardData`:
``library_name: hma_zoo``, ``pipeline_tag: robotics``, ``license``, ``tags`` (the token family ``vq``/``mar`` or
``vq``/``kl``, and the embodiments), ``datasets``, ``base_model`` for a fine-tune and ``model-index`` with the
measured metrics), then the body: intended use, data, training, the evaluation table, limitations, citation.
Everything in it comes from the saved ``config.json``, read through :func:`hma_zoo.hub.describe` (the one reader of
the metadata every writer records). ``hma-zoo card FOLDER`` (or :func:`write_card`) writes ``README.md`` next to
the weights and a copy to ``model_cards/<variant>.<tag>.md``; :func:`card_problems` checks a card's front matter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hma_zoo.hub import CARD_NAME, describe, read_config

LIBRARY_NAME = "hma_zoo"
PIPELINE_TAG = "robotics"
REQUIRED_KEYS = ("library_name", "pipeline_tag", "license", "tags", "datasets", "model-index")

CITATION = """@article{wang2025hma,
  title   = {Learning Real-World Action-Video Dynamics with Heterogeneous Masked Autoregression},
  author  = {Wang, Lirui and Zhao, Kevin and Liu, Chaoqi and Chen, Xinlei},
  journal = {arXiv preprint arXiv:2502.04296},
  year    = {2025}
}"""

# per-row counts, not measurements: kept in the table, left out of the model-index
_COUNTS = {"frames", "tokens_seen"}


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_table(metrics: dict[str, Any]) -> str:
    if not metrics:
        return "No metrics were recorded with these weights.\n"
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    lines = []
    if flat:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
    if nested:
        columns = sorted({c for row in nested.values() for c in row})
        lines += ["", "| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        lines += [f"| {k} | " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for k, row in nested.items()]
    return "\n".join(lines) + "\n"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hub_base_model(base: str | None) -> str | None:
    """``base_model`` for the front matter: a hub repo id (a tag registered with one maps to it), else ``None``."""
    if not base:
        return None
    from hma_zoo.pretrained import pretrained_cfg

    cfg = pretrained_cfg(base)
    if cfg is not None and cfg.hf_hub_id:
        return cfg.hf_hub_id
    s = base.removeprefix("hf-hub:")
    return s if s.count("/") == 1 and not Path(s).exists() else None


def _eval_results(info: dict[str, Any], meta: dict[str, Any]) -> list[Any]:
    """``EvalResult`` s of the measured metrics: the ``all`` rows (every row when there is none) and flat values."""
    from huggingface_hub import EvalResult

    metrics = info["metrics"]
    data = info["data"] or "unrecorded"
    split = (meta.get("evaluation") or {}).get("split", "val")
    if info["kind"] == "hma":
        task = "action-conditioned video prediction"
    else:
        task = "video frame reconstruction"
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    rows = {k: v for k, v in nested.items() if k == "all" or k.startswith("all ")} or nested
    out = []
    for key, row in rows.items():
        emb, _, mode = key.partition(" (")
        mode = mode.rstrip(")")
        # the hub groups results by task type and dataset (config): the mode and the row name keep them apart
        config = ", ".join(x for x in (None if emb == "all" else emb, mode or None) if x) or None
        for metric, value in row.items():
            if _is_number(value) and "(" not in metric and metric not in _COUNTS:
                out.append(EvalResult(task_type=PIPELINE_TAG, task_name=f"{task} ({mode})" if mode else task,
                                      dataset_type=data, dataset_name=data, dataset_config=config,
                                      dataset_split=split, metric_type=metric,
                                      metric_name=f"{metric} ({config or emb})", metric_value=round(value, 4)))
    for metric, value in metrics.items():
        if _is_number(value):
            out.append(EvalResult(task_type=PIPELINE_TAG, task_name=task, dataset_type=data, dataset_name=data,
                                  dataset_split=split, metric_type=metric, metric_value=round(value, 4)))
    return out


def card_data(payload: dict[str, Any], folder: str | os.PathLike | None = None) -> Any:
    """The front matter (a ``huggingface_hub.ModelCardData``) of a parsed ``config.json`` ``payload``."""
    from huggingface_hub import ModelCardData

    info = describe(payload, folder)
    config, meta = payload["config"], payload.get("meta") or {}
    if info["kind"] == "hma":
        family = ["world-model", "hma", config["tokens"]["kind"]]
    else:
        family = ["video-tokenizer", config.get("spec", {}).get("kind", "tokenizer")]
    tags = [LIBRARY_NAME, PIPELINE_TAG, "video", *family, *info["embodiments"]]
    return ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        license=info["license"],
        tags=list(dict.fromkeys(tags)),
        datasets=[info["data"]] if info["data"] else None,
        base_model=_hub_base_model(info["base_model"]),
        model_name=info["name"],
        eval_results=_eval_results(info, meta) or None,
    )


def _world_model_facts(config: dict[str, Any], info: dict[str, Any]) -> list[str]:
    trunk, tokens, cond = config["trunk"], config["tokens"], config["conditioning"]
    vq = tokens["kind"] == "vq"
    family = "discrete ids, MaskGIT" if vq else "continuous latents, MAR diffusion head"
    grid = f"grid {tokens['grid']}" + (
        f", vocab {tokens['vocab_size']} as {tokens['factor_sizes']}" if vq
        else f", {tokens['latent_channels']} channels, patch {tokens['patch_size']}"
    )
    size = f"d={trunk['d_model']}, {trunk['depth']} blocks, {trunk['num_heads']} heads"
    lines = [
        "An HMA action-conditioned video world model (Wang et al., arXiv 2502.04296), trained with hma_zoo.",
        "",
        "| | |",
        "|---|---|",
        f"| token family | `{tokens['kind']}` ({family}) |",
        f"| trunk | {size}, window {trunk['max_frames']} frames |",
        f"| conditioning | `{cond['mode']}` |",
        f"| tokens per frame | {grid} |",
        f"| parameters | {info['params'] or 'n/a'} |",
        f"| tokenizer | {info['tokenizer'] or 'not recorded'} |",
    ]
    return lines


def render_card(payload: dict[str, Any], folder: str | os.PathLike | None = None, hub_id: str | None = None) -> str:
    """A model card (Markdown with front matter) for a parsed ``config.json`` ``payload`` of a world model or
    tokenizer; ``folder`` names it (``<variant>.<tag>``) and ``hub_id`` is where it will be published."""
    from huggingface_hub import ModelCard

    info = describe(payload, folder)
    config, meta, kind, name = payload["config"], payload.get("meta") or {}, info["kind"], info["name"]
    data = info["data"]
    body = [f"# {name}", ""]
    if kind == "hma":
        body += _world_model_facts(config, info)
    else:
        spec, arch = config.get("spec", {}), config.get("arch", {})
        what = "discrete ids" if spec.get("kind") == "vq" else "continuous latents"
        body += [f"A video tokenizer trained with hma_zoo: frames to {what} (`{spec.get('kind')}`), for the world "
                 "models of the zoo.", "", "| | |", "|---|---|", f"| class | `{config.get('class')}` |"]
        body += [f"| {k} | {_fmt(v)} |" for k, v in spec.items()]
        body += [f"| {k} | {_fmt(v)} |" for k, v in arch.items() if k not in spec and k != "name"]
    source = f"hf-hub:{hub_id}" if hub_id else name
    body += ["", "## Intended use", "",
             "Research on action-conditioned video world models for simulated robots: rollouts, policy evaluation "
             "in the model, synthetic data. Load it with hma_zoo (config.json + safetensors; nothing is unpickled):",
             "", "```python", "import hma_zoo"]
    if kind == "hma":
        body += [f"model = hma_zoo.create_model(\"{source}\", pretrained=True)",
                 f"sim = hma_zoo.load_simulator(\"{source}\")  # with its bundled tokenizer"]
    else:
        body += [f"tok = hma_zoo.load_tokenizer(\"{source}\")"]
    body += ["```", "", "## Data", "", f"Trained on: {data or 'not recorded'}."]
    if info["embodiments"]:
        body += ["", "Embodiments: " + ", ".join(info["embodiments"]) + "."]
    if kind == "hma":
        body += ["", "| name | action dim | control steps per frame |", "|---|---|---|"]
        body += [f"| {e['name']} | {e['action_dim']} | {e['stride']} |" for e in config.get("embodiments", [])]
    body += ["", "## Training", ""]
    if info["base_model"]:
        body += [f"Fine-tuned from `{info['base_model']}`.", ""]
    if meta.get("continued_from", {}).get("path"):
        body += [f"Continued from `{meta['continued_from']['path']}`.", ""]
    body += ["```", json.dumps(info["training"], indent=2), "```"] if info["training"] else ["Not recorded."]
    body += ["", "## Evaluation", ""]
    if info["metrics_source"] == "final_metrics":
        body += ["Validation metrics logged at the end of training:", ""]
    elif info["metrics_source"] == "val" or (kind == "tokenizer" and info["metrics"]):
        body += ["Reconstruction of the validation frames, per embodiment:", ""]
    elif info["metrics"]:
        body += ["From `hma-zoo evaluate` (model rows with the random-action and tokenized-copy baselines):", ""]
    body += [_metrics_table(info["metrics"])]
    if info.get("eval_data") and info["eval_data"] != info["data"]:
        body += [f"Evaluated on: {info['eval_data']} (not a training dataset).", ""]
    if info["machine"]:
        body += [f"Measured on: {info['machine']}.", ""]
    body += [
        "## Limitations",
        "",
        "Trained on simulator data at small scale on CPUs; not a general-purpose robot world model. Frame metrics"
        " are only comparable within this project (see docs/results.md).",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    front = card_data(payload, folder).to_yaml()
    return str(ModelCard(f"---\n{front}\n---\n\n" + "\n".join(body)))


def card_problems(text: str, required: tuple[str, ...] = REQUIRED_KEYS) -> list[str]:
    """What keeps the card ``text`` (Markdown) from being a valid zoo card: unparsable front matter (YAML, or a
    model-index ``huggingface_hub`` rejects), a missing ``required`` key, a wrong ``library_name`` or
    ``pipeline_tag``, a model-index without numeric values. Empty when it is valid."""
    import yaml
    from huggingface_hub import ModelCard

    if not text.startswith("---\n"):
        return ["no YAML front matter"]
    try:
        front = yaml.safe_load(text.split("---\n", 2)[1]) or {}
        parsed = ModelCard(text, ignore_metadata_errors=False)
    except Exception as err:  # yaml or model-index errors: the message is the problem
        return [f"invalid front matter: {type(err).__name__}: {err}"]
    problems = [f"missing {k}" for k in required if not front.get(k)]
    if front.get("library_name") != LIBRARY_NAME:
        problems.append(f"library_name is {front.get('library_name')!r}, not {LIBRARY_NAME!r}")
    if front.get("pipeline_tag") != PIPELINE_TAG:
        problems.append(f"pipeline_tag is {front.get('pipeline_tag')!r}, not {PIPELINE_TAG!r}")
    results = parsed.data.eval_results or []
    if "model-index" in front and not (results and all(_is_number(r.metric_value) for r in results)):
        problems.append("model-index has no numeric metric values")
    return problems


def card_name(folder: str | os.PathLike) -> str:
    """The card's file name stem for a saved folder: ``<variant>.<tag>``."""
    return describe(read_config(folder), folder)["name"]


def write_card(folder: str | os.PathLike, cards_dir: str | os.PathLike | None = None,
               hub_id: str | None = None) -> Path:
    """Render ``README.md`` in a saved model ``folder`` (and a copy in ``cards_dir`` if given); returns its path.
    A bundled ``tokenizer/`` folder gets its own ``README.md`` too."""
    text = render_card(read_config(folder), folder, hub_id)
    out = Path(folder) / CARD_NAME
    out.write_text(text)
    bundled = Path(folder) / "tokenizer"
    if (bundled / "config.json").is_file():
        (bundled / CARD_NAME).write_text(render_card(read_config(bundled), bundled))
    if cards_dir is not None:
        Path(cards_dir).mkdir(parents=True, exist_ok=True)
        (Path(cards_dir) / f"{card_name(folder)}.md").write_text(text)
    return out


def write_measured_card(model_dir: Path, model: Any, result: dict[str, Any], data: Path, tag: str = "quickstart",
                        **meta: Any) -> Path:
    """Store the ``model`` rows of an evaluation ``result`` (:func:`hma_zoo.eval.evaluate`), with their random-action
    and tokenized-copy baselines, and ``meta`` in the saved model's metadata; then render its card (``README.md``)."""
    import platform

    config_path = model_dir / "config.json"
    payload = json.loads(config_path.read_text())
    metrics: dict[str, Any] = {}
    rows = {(r["mode"], r["method"], r["embodiment"]): r for r in result["rows"] if r.get("horizon", "all") == "all"}
    for (mode, method, emb), row in rows.items():
        if method != "model" or row.get("psnr") is None:
            continue
        entry = metrics.setdefault(f"{emb} ({mode})", {})
        for name in ("psnr", "ssim", "delta_psnr", "state_error_norm", "token_acc", "perplexity"):
            if row.get(name) is not None:
                entry[name] = round(float(row[name]), 3)
        for base in ("model_random_actions", "copy_last_frame_tokenized"):
            other = rows.get((mode, base, emb), {})
            for name in ("psnr", "state_error_norm"):
                if other.get(name) is not None:
                    entry[f"{name} ({base})"] = round(float(other[name]), 3)
    params = sum(p.numel() for p in model.parameters())
    # the evaluation data is recorded on its own; it names the training data only when none was recorded (a model
    # fine-tuned on one dataset and evaluated on another keeps both)
    payload["meta"].setdefault("data", data.name)
    payload["meta"].update(tag=tag, eval_data=data.name, metrics=metrics, params=f"{params / 1e6:.2f}M",
                           machine=f"{platform.machine()} CPU, {os.cpu_count()} cores", **meta)
    config_path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return write_card(model_dir)


def main(argv: list[str]) -> int:
    """``hma-zoo card FOLDER [--cards-dir model_cards]``: render the model card of a saved model (and of the
    tokenizer bundled with it)."""
    import argparse

    parser = argparse.ArgumentParser(prog="hma-zoo card", description=main.__doc__)
    parser.add_argument("folder", help="a folder written by save_pretrained, or a pretrained tag")
    parser.add_argument("--cards-dir", default=None, help="also copy the card here as <variant>.<tag>.md")
    parser.add_argument("--hub-id", default=None, help="the hub repo the weights are published in (for the usage "
                        "snippet)")
    args = parser.parse_args(argv)
    from hma_zoo.pretrained import resolve_shipped

    folder = resolve_shipped(args.folder)
    read_config(folder)  # a clear error when it is not a saved folder
    print(write_card(folder, args.cards_dir, args.hub_id))
    return 0
