"""hma_zoo: Heterogeneous Masked Autoregression (HMA, arXiv 2502.04296) as a PyTorch Lightning model zoo.

Public API (imported lazily so ``import hma_zoo`` is fast)::

    import hma_zoo
    hma_zoo.list_models("hma-vq-*")
    model = hma_zoo.create_model("hma-vq-s64", embodiments=[hma_zoo.EmbodimentSpec("arm", action_dim=4)])
    model = hma_zoo.load_pretrained("path/or/org/repo")
    sim = hma_zoo.Simulator(model, tokenizer)
    sim = hma_zoo.load_simulator("hma-vq-t64.simmix")     # shipped weights + their tokenizer, offline
"""

from __future__ import annotations

from hma_zoo._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "create_model": "hma_zoo.registry",
    "list_models": "hma_zoo.registry",
    "model_info": "hma_zoo.registry",
    "load_pretrained": "hma_zoo.registry",
    "save_pretrained": "hma_zoo.hub",
    "HMA": "hma_zoo.model.hma",
    "HMAConfig": "hma_zoo.configs",
    "EmbodimentSpec": "hma_zoo.configs",
    "TokenSpec": "hma_zoo.configs",
    "TrunkConfig": "hma_zoo.configs",
    "ConditioningConfig": "hma_zoo.configs",
    "DiffusionHeadConfig": "hma_zoo.configs",
    "create_tokenizer": "hma_zoo.tokenizers",
    "load_tokenizer": "hma_zoo.tokenizers",
    "Simulator": "hma_zoo.sim",
    "load_simulator": "hma_zoo.pretrained",
}

__all__ = sorted(_LAZY) + ["__version__"]


__getattr__ = lazy_getattr(__name__, _LAZY)
