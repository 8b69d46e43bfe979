"""Model cards rendered from what was measured, never typed by hand.

A card is Markdown with YAML front matter (the Hugging Face hub convention). Everything in it comes from the
saved ``config.json``: the architecture from ``config``, and provenance and measured figures from ``meta``
(``variant``, ``tag``, ``data``, ``training`` and ``metrics``, a dict of metric name -> value or a nested
dict per embodiment). ``hma-zoo card FOLDER`` (or :func:`write_card`) writes ``README.md`` next to the weights
and a copy to ``model_cards/<variant>.<tag>.md``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hma_zoo.hub import read_config

CITATION = """@article{wang2025hma,
  title   = {Learning Real-World Action-Video Dynamics with Heterogeneous Masked Autoregression},
  author  = {Wang, Lirui and Zhao, Kevin and Liu, Chaoqi and Chen, Xinlei},
  journal = {arXiv preprint arXiv:2502.04296},
  year    = {2025}
}"""


def _fmt(value: Any) -> str:
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


def render_card(payload: dict[str, Any]) -> str:
    """A model card (Markdown) for a parsed ``config.json`` payload of a world model or tokenizer."""
    config, meta, kind = payload["config"], payload.get("meta", {}), payload["hma_zoo_kind"]
    name = meta.get("variant", kind) + (f".{meta['tag']}" if meta.get("tag") else "")
    datasets = meta.get("data", "")
    front = ["---", "library_name: hma_zoo", "license: apache-2.0", "tags: [world-model, robotics, video, hma]"]
    if datasets:
        front.append(f"datasets: [{datasets}]")
    front.append("---")
    body = [f"# {name}", ""]
    if kind == "hma":
        trunk, tokens, cond = config["trunk"], config["tokens"], config["conditioning"]
        vq = tokens["kind"] == "vq"
        family = "discrete ids, MaskGIT" if vq else "continuous latents, MAR diffusion head"
        grid = f"grid {tokens['grid']}" + (
            f", vocab {tokens['vocab_size']} as {tokens['factor_sizes']}" if vq
            else f", {tokens['latent_channels']} channels, patch {tokens['patch_size']}"
        )
        size = f"d={trunk['d_model']}, {trunk['depth']} blocks, {trunk['num_heads']} heads"
        body += [
            "An HMA action-conditioned video world model (Wang et al., arXiv 2502.04296), trained with hma_zoo.",
            "",
            "| | |",
            "|---|---|",
            f"| token family | `{tokens['kind']}` ({family}) |",
            f"| trunk | {size}, window {trunk['max_frames']} frames |",
            f"| conditioning | `{cond['mode']}` |",
            f"| tokens per frame | {grid} |",
            f"| parameters | {meta.get('params', 'n/a')} |",
            "",
            "## Embodiments",
            "",
            "| name | action dim | control steps per frame |",
            "|---|---|---|",
        ]
        body += [f"| {e['name']} | {e['action_dim']} | {e['stride']} |" for e in config.get("embodiments", [])]
    else:
        body += ["A video tokenizer trained with hma_zoo.", "", "```json", json.dumps(config, indent=2), "```"]
    body += ["", "## Training", "", f"Data: {datasets or 'not recorded'}."]
    if meta.get("training"):
        body += ["", "```", json.dumps(meta["training"], indent=2), "```"]
    body += ["", "## Measured results", "", _metrics_table(meta.get("metrics", {}))]
    if meta.get("machine"):
        body += [f"Measured on: {meta['machine']}.", ""]
    body += [
        "## Use",
        "",
        "```python",
        "import hma_zoo",
        f"model = hma_zoo.load_pretrained(\"path/or/org/{name}\")" if kind == "hma" else
        f"tok = hma_zoo.load_tokenizer(\"path/or/org/{name}\")",
        "```",
        "",
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
    return "\n".join(front + body)


def write_card(folder: str | os.PathLike, cards_dir: str | os.PathLike | None = None) -> Path:
    """Render ``README.md`` in a saved model ``folder`` (and a copy in ``cards_dir`` if given); returns its path."""
    payload = read_config(folder)
    text = render_card(payload)
    out = Path(folder) / "README.md"
    out.write_text(text)
    if cards_dir is not None:
        meta = payload.get("meta", {})
        name = meta.get("variant", payload["hma_zoo_kind"]) + (f".{meta['tag']}" if meta.get("tag") else "")
        Path(cards_dir).mkdir(parents=True, exist_ok=True)
        (Path(cards_dir) / f"{name}.md").write_text(text)
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
    payload["meta"].update(tag=tag, data=data.name, metrics=metrics, params=f"{params / 1e6:.2f}M",
                           machine=f"{platform.machine()} CPU, {os.cpu_count()} cores", **meta)
    config_path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return write_card(model_dir)


def main(argv: list[str]) -> int:
    """``hma-zoo card FOLDER [--cards-dir model_cards]``: render the model card of a saved model."""
    import argparse

    parser = argparse.ArgumentParser(prog="hma-zoo card", description=main.__doc__)
    parser.add_argument("folder", help="a folder written by save_pretrained")
    parser.add_argument("--cards-dir", default=None, help="also copy the card here as <variant>.<tag>.md")
    args = parser.parse_args(argv)
    print(write_card(args.folder, args.cards_dir))
    return 0
