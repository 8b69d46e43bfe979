"""``hma-zoo policy ...``: record demonstrations, train behaviour-cloning policies and success judges, and rank
policies inside a world model against the real simulator.

Examples::

    hma-zoo policy tasks
    hma-zoo policy demos --task reach --episodes 125 --policy scripted:noise=0.1 --out data/demos-reach
    hma-zoo policy train --data data/demos-reach --task reach --steps 3000 --out policies/bc-reach
    hma-zoo policy judge --data data/judge-reach --task reach --out judges/reach
    hma-zoo policy eval --task reach --model hma-vq-t64.simmix --judge judges/reach --probe data/judge-reach/probe \\
        --policy scripted:noise=0 --policy scripted:noise=0.5 --policy bc:policies/bc-reach/step-001000 --out runs/pe
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)

EVAL_SEED = 10_000  # base seed of the held-out resets policies are scored on (demos use 0 and 1)


def build_parser() -> argparse.ArgumentParser:
    """The ``hma-zoo policy`` argument parser."""
    p = argparse.ArgumentParser(prog="hma-zoo policy", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("tasks", help="list the policy tasks")

    d = sub.add_parser("demos", help="record policy episodes in a task's real simulator as a dataset")
    d.add_argument("--task", required=True, help="task name (see `hma-zoo policy tasks`)")
    d.add_argument("--policy", action="append", required=True,
                   help="policy spec, repeatable (cycled per episode): scripted[:noise=S], random, bc:PATH")
    d.add_argument("--episodes", type=int, required=True, help="number of episodes")
    d.add_argument("--out", required=True, help="output dataset folder")
    d.add_argument("--seed", type=int, default=0, help="base seed of the episodes' resets")
    d.add_argument("--val-fraction", type=float, default=0.2, help="share of episodes in the val split")
    d.add_argument("--horizon", type=int, default=None, help="frames per episode (default: the task's)")
    d.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")

    t = sub.add_parser("train", help="train an image-based behaviour-cloning policy (exports snapshots)")
    t.add_argument("--data", required=True, help="task dataset (hma-zoo policy demos)")
    t.add_argument("--task", required=True, help="task name")
    t.add_argument("--out", required=True, help="folder for the snapshots step-NNNNNN/")
    t.add_argument("--steps", type=int, default=3000, help="optimizer steps (training stops on this count)")
    t.add_argument("--save-steps", default="", help="comma-separated further steps to export, e.g. 100,300,1000")
    t.add_argument("--episodes", type=int, default=None, help="use only the first N train episodes of --data")
    t.add_argument("--extra", action="append", default=[],
                   help="another dataset whose train episodes are added (e.g. from hma-zoo generate); repeatable")
    t.add_argument("--extra-episodes", type=int, default=None,
                   help="add only the first N episodes (by id) of each --extra dataset")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    t.add_argument("--batch-size", type=int, default=64, help="samples per step (default 64)")
    t.add_argument("--backbone", default="test_resnet", help="timm backbone (built from scratch)")
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    t.add_argument("--eval-episodes", type=int, default=0,
                   help="after training, run each snapshot this many episodes in the real simulator (held-out resets, "
                        "the same for every policy); writes OUT/real_eval.json")

    j = sub.add_parser("judge", help="train a success judge on real frames labelled by the simulator")
    j.add_argument("--data", required=True, help="task dataset with successes and failures (hma-zoo policy demos)")
    j.add_argument("--task", required=True, help="task name (see `hma-zoo policy tasks`)")
    j.add_argument("--out", required=True, help="folder for the judge (config.json + model.safetensors)")
    j.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    j.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    j.add_argument("--batch-size", type=int, default=64, help="frames per step (default 64)")
    j.add_argument("--backbone", default="test_resnet", help="timm backbone (built from scratch)")
    j.add_argument("--probe", default=None, help="state probe folder: also measure the state-probe rule judge")

    e = sub.add_parser("eval", help="rank policies in a world model against the real simulator (policy-eval)")
    e.add_argument("--task", required=True, help="task name (see `hma-zoo policy tasks`)")
    e.add_argument("--model", required=True, help="world model: shipped name, folder or hub id")
    e.add_argument("--tokenizer", default=None, help="tokenizer (default: the one bundled with --model)")
    e.add_argument("--judge", required=True,
                   help="success judge folder (hma-zoo policy judge), or 'probe-rule' to judge with --probe")
    e.add_argument("--probe", default=None, help="state probe folder: gives scripted policies their state")
    e.add_argument("--also-probe-rule", action="store_true",
                   help="also score every rollout with the state-probe rule judge (needs --probe) and report its "
                        "agreement beside the main judge's")
    e.add_argument("--policy", action="append", required=True,
                   help="policy spec, repeatable: scripted[:noise=S], random, bc:PATH")
    e.add_argument("--episodes", type=int, default=20, help="rollouts per policy in each environment")
    e.add_argument("--horizon", type=int, default=None, help="frames per rollout (default: the task's)")
    e.add_argument("--seed", type=int, default=0, help="seed of the resets, the policies and the sampling")
    e.add_argument("--steps", type=int, default=2, help="MaskGIT / MAR steps per generated frame")
    e.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1; 0 = greedy)")
    e.add_argument("--gifs", type=int, default=2, help="side-by-side GIFs per policy")
    e.add_argument("--out", required=True, help="report folder (summary.json, report.md, gifs/)")

    y = sub.add_parser("synthetic", help="the synthetic-data experiment: BC on real vs real + generated episodes")
    y.add_argument("--task", required=True, help="task name (see `hma-zoo policy tasks`)")
    y.add_argument("--data", required=True, help="real demonstrations of the task (hma-zoo policy demos)")
    y.add_argument("--model", required=True, help="world model that generates episodes")
    y.add_argument("--tokenizer", default=None, help="tokenizer (default: the one bundled with --model)")
    y.add_argument("--out", required=True, help="experiment folder (resumes: finished runs are skipped)")
    y.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run of every arm each (default 0,1,2)")
    y.add_argument("--real", type=int, default=10, help="real demonstrations of the small set (paper: 10)")
    y.add_argument("--generated", default="10,50,90", help="generated episodes added to them (paper: 10,50,90)")
    y.add_argument("--full", type=int, default=100, help="real demonstrations of the full set (paper: 100)")
    y.add_argument("--steps", type=int, default=1000, help="BC optimizer steps of every run")
    y.add_argument("--eval-episodes", type=int, default=50, help="real-simulator episodes per policy")
    y.add_argument("--frames", type=int, default=None, help="generated frames per episode (default: task horizon)")
    y.add_argument("--actions", default="replay", choices=("replay", "policy", "model"),
                   help="action source of the generated episodes (see hma-zoo generate)")
    y.add_argument("--noise", type=float, default=0.2, help="action noise of the generated episodes (x action std)")
    y.add_argument("--policy", default=None, help="policy spec for --actions policy")
    y.add_argument("--probe", default=None, help="state probe for --actions policy")
    y.add_argument("--sample-steps", type=int, default=2, help="MaskGIT / MAR steps per generated frame")
    return p


def _synthetic(args: argparse.Namespace) -> int:
    from hma_zoo.policy.synthetic import run_synthetic, to_markdown
    from hma_zoo.pretrained import load_simulator

    sim = load_simulator(args.model, args.tokenizer, steps=args.sample_steps, record=True)
    summary = run_synthetic(
        args.task, args.data, sim, args.out, seeds=[int(x) for x in args.seeds.split(",") if x.strip()],
        real=args.real, generated=[int(x) for x in args.generated.split(",") if x.strip()], full=args.full,
        steps=args.steps, eval_episodes=args.eval_episodes, frames=args.frames, actions=args.actions,
        noise=args.noise, policy=args.policy, probe=args.probe, model_tag=str(args.model), eval_seed=EVAL_SEED)
    print(to_markdown(summary))
    print(f"table: {args.out}/synthetic.md")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from hma_zoo.eval.probe import load_probe
    from hma_zoo.policy.evaluate import policy_eval
    from hma_zoo.policy.judge import ProbeRuleJudge, load_judge
    from hma_zoo.policy.policies import make_policy
    from hma_zoo.policy.ranking import to_markdown
    from hma_zoo.pretrained import load_simulator

    if args.judge == "probe-rule" and args.probe is None:
        raise ValueError("--judge probe-rule needs --probe DIR (a state probe fitted on the task's data)")
    if args.also_probe_rule and args.probe is None:  # checked before the world model is loaded
        raise ValueError("--also-probe-rule needs --probe DIR")
    sim = load_simulator(args.model, args.tokenizer, steps=args.steps, temperature=args.temperature,
                         generator=torch.Generator().manual_seed(args.seed), record=False)
    probe = load_probe(args.probe) if args.probe else None
    judge = ProbeRuleJudge(probe, args.task) if args.judge == "probe-rule" else load_judge(args.judge)
    policies = [make_policy(p, args.task) for p in args.policy]
    others = {"probe-rule": ProbeRuleJudge(probe, args.task)} if args.also_probe_rule else None
    summary = policy_eval(args.task, sim, policies, judge, probe=probe, episodes=args.episodes, seed=args.seed,
                          horizon=args.horizon, out_dir=args.out, gifs=args.gifs, other_judges=others,
                          meta={"model": str(args.model), "judge": str(args.judge), "probe": args.probe,
                                "sample_steps": args.steps, "temperature": args.temperature})
    print(to_markdown(summary))
    print(f"report: {args.out}/report.md ({summary['seconds']:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hma-zoo policy``; returns a process exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from hma_zoo.policy.tasks import TASKS

    try:
        if args.cmd == "tasks":
            for name, t in TASKS.items():
                print(f"{name:<7} embodiment {t.embodiment:<17} chunk {t.stride}x{t.action_dim}  horizon "
                      f"{t.horizon:>3}  score {t.score:<8} {t.description}")
            return 0
        if args.cmd == "demos":
            from hma_zoo.policy.demos import record_demos

            summary = record_demos(args.task, args.policy, args.episodes, args.out, seed=args.seed,
                                   val_fraction=args.val_fraction, horizon=args.horizon, overwrite=args.overwrite)
            for name, row in summary["policies"].items():
                print(f"{name:<28} {row['episodes']:>4} episodes  mean score {row['mean_score']:.3f}")
            print(f"wrote {summary['episodes']} episodes to {summary['out']} in {summary['seconds']:.0f} s")
            return 0
        if args.cmd == "train":
            from hma_zoo.policy.bc import train_bc
            from hma_zoo.policy.synthetic import _score_policy
            from hma_zoo.policy.tasks import get_task

            save = [int(x) for x in args.save_steps.split(",") if x.strip()]
            paths = train_bc(args.data, args.task, args.out, steps=args.steps, save_steps=save,
                             episodes=args.episodes, extra=args.extra, seed=args.seed, batch_size=args.batch_size,
                             backbone=args.backbone, lr=args.lr, extra_episodes=args.extra_episodes)
            results = {}
            for path in paths:
                line = f"{path}"
                if args.eval_episodes:
                    # the same held-out resets for every policy (demos use seeds 0 and 1 of episode_seed)
                    results[path.name] = _score_policy(path, get_task(args.task), args.eval_episodes, EVAL_SEED)
                    line += (f"  real-simulator score {results[path.name]['score']:.3f} over {args.eval_episodes} "
                             "episodes")
                print(line)
            if results:
                import json
                from pathlib import Path

                (Path(args.out) / "real_eval.json").write_text(json.dumps(
                    {"task": args.task, "eval_seed": EVAL_SEED, "episodes": args.eval_episodes, "snapshots": results},
                    indent=1))
            return 0
        if args.cmd == "judge":
            from hma_zoo.eval.probe import load_probe
            from hma_zoo.policy.judge import fit_judge

            probe = load_probe(args.probe) if args.probe else None
            _, metrics = fit_judge(args.data, args.task, args.out, steps=args.steps, seed=args.seed,
                                   batch_size=args.batch_size, backbone=args.backbone, probe=probe)
            for name, m in metrics.items():
                print(f"{name:<11} held-out frames: accuracy {m['frame_accuracy']:.3f}  AUROC {m['frame_auroc']:.3f}"
                      f"  | episodes: accuracy {m['episode_accuracy']:.3f} ({m['episodes']} episodes, "
                      f"{m['successful_episodes']} successful)")
            print(f"saved the judge to {args.out}")
            return 0
        if args.cmd == "eval":
            return _eval(args)
        if args.cmd == "synthetic":
            return _synthetic(args)
    except (KeyError, ValueError, FileExistsError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hma-zoo policy {args.cmd}: {msg}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects unknown subcommands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
