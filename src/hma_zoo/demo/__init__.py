"""The interactive demo: drive a world model in the browser, in real time (``hma-zoo demo``; docs/demo.md).

* :mod:`hma_zoo.demo.app`: the web server (Starlette + uvicorn, one websocket per browser tab) and ``main``.
* :mod:`hma_zoo.demo.session`: one :class:`~hma_zoo.sim.Simulator` per session, the cap, idle freeing.
* :mod:`hma_zoo.demo.prompts`: built-in example prompts and prompts from a local dataset.
* :mod:`hma_zoo.demo.real`: the real simulator beside the prediction.

Needs the ``demo`` extra (``pip install -e '.[demo]'``: starlette, uvicorn, websockets); nothing here imports
``hma_zoo.lit``.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``hma-zoo demo`` (imports the web stack only when called)."""
    try:
        from hma_zoo.demo.app import main as _main
    except ImportError as err:  # pragma: no cover - the extra is missing
        raise ImportError(f"hma-zoo demo needs the demo extra ({err}): pip install -e '.[demo]'") from err
    return _main(argv)
