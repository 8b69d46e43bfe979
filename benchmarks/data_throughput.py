"""Does training ever wait on data? Windows/s from HMADataModule vs windows/s consumed by a training step.

    python benchmarks/data_throughput.py --data data/sim-mix-mini [--model hma-vq-s64] [--window 12]

Prints the median loader throughput (windows/s, after the first batch so worker start-up is excluded) at
``num_workers`` 0 and 2, the median training-step consumption of the model (forward + loss on 50% masked tokens +
backward + AdamW, tokens drawn at random because the tokenizer is not part of this measurement), and their ratio
(target >= 10x). If ``hma_zoo.create_model`` cannot build the model, a comparable plain-torch transformer stand-in
is timed instead and the output says so.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch

log = logging.getLogger("data_throughput")


def loader_rate(data: str, window: int, batch_size: int, workers: int, batches: int, repeats: int) -> float:
    """Median windows/s over ``repeats`` runs of ``batches`` batches (first batch of each run not timed)."""
    from hma_zoo.data import HMADataModule

    rates = []
    for r in range(repeats):
        dm = HMADataModule(data, window=window, batch_size=batch_size, num_workers=workers, seed=r,
                           epoch_windows=(batches + 2) * batch_size * max(workers, 1))
        it = iter(dm.train_dataloader())
        next(it)
        n, t0 = 0, time.perf_counter()
        for _ in range(batches):
            n += len(next(it)["embodiment"])
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def model_rate(name: str, embodiments: tuple, a_max: int, window: int, batch_size: int,
               steps: int) -> tuple[float, str]:
    """Median windows/s consumed by training steps of model ``name`` (or a stand-in); returns (rate, label)."""
    names = [e.name for e in embodiments]
    try:
        from hma_zoo import create_model

        model = create_model(name, embodiments=list(embodiments))
        T = min(window, model.config.trunk.max_frames)
        h, w = model.config.tokens.grid
        vocab = model.config.tokens.vocab_size
        label = f"{name} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params, T={T})"

        def step() -> None:
            tokens = torch.randint(0, vocab, (batch_size, T, h, w))
            actions = torch.randn(batch_size, T, a_max)
            mask = torch.rand(batch_size, T, h, w) < 0.5
            emb = [names[i % len(names)] for i in range(batch_size)]
            out = model.compute_loss(tokens, actions, emb, mask, action_valid=torch.ones(batch_size, T, dtype=bool))
            out["loss"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    except Exception as exc:  # noqa: BLE001 - fall back to a stand-in with the same shapes
        log.warning("create_model(%r) failed (%s); timing a plain-torch stand-in", name, exc)
        T, h, w, d = window, 8, 8, 256
        layer = torch.nn.TransformerEncoderLayer(d, 8, 4 * d, batch_first=True, norm_first=True)
        model = torch.nn.Sequential(torch.nn.Embedding(1024, d), torch.nn.TransformerEncoder(layer, 8),
                                    torch.nn.Linear(d, 1024))
        label = f"STAND-IN plain torch transformer d={d}, 8 layers over T*64 tokens, T={T}"

        def step() -> None:
            tokens = torch.randint(0, 1024, (batch_size, T * h * w))
            loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times), label


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/sim-mix-mini")
    p.add_argument("--model", default="hma-vq-s64")
    p.add_argument("--window", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from hma_zoo.data import HMADataModule

    dm = HMADataModule(args.data, window=args.window, batch_size=args.batch_size, num_workers=0)
    rates = {w: loader_rate(args.data, args.window, args.batch_size, w, args.batches, args.repeats) for w in (0, 2)}
    consume, label = model_rate(args.model, dm.embodiments, dm.max_chunk_dim, args.window, args.batch_size,
                                args.steps)
    print(f"data: {args.data}  window T={args.window}  batch {args.batch_size}  "
          f"(torch threads {torch.get_num_threads()})")
    for w, r in rates.items():
        print(f"loader  num_workers={w}: {r:8.1f} windows/s (median of {args.repeats})")
    print(f"model   {label}: {consume:8.2f} windows/s consumed per training step (median of {args.steps})")
    for w, r in rates.items():
        print(f"ratio   loader(num_workers={w}) / training = {r / consume:8.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
